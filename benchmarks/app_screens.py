"""Screenshots of `fastmask app`'s tabs in headless Chromium, for the README (docs/app/*.png).

    python benchmarks/app_screens.py [--run RUN_DIR] [--photo FILE] [--out docs/app] [--persons 60] [--epochs 12]
                                     [--width 1280]

Without --run, `split_mobilenetv2 --quick --epochs 12` is trained on a demo data set of --persons people in a
temporary folder (a few minutes on 2 cores). The photo (default: the first demo eval portrait in which MTCNN finds a face, else the
first) is uploaded on "Try it"; then "Its mistakes" and "The run" are opened; each is written as a whole-page PNG,
and a non-image upload's message as `bad_upload.png`. Needs the `app` extra, Selenium, and Chromium with chromedriver
(Debian: apt-get install chromium chromium-driver). The page is served on 127.0.0.1 and stopped at the end.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(folder: Path, persons: int, epochs: int) -> tuple[Path, Path]:
    "A quick split-task run on a fresh demo data set: (run folder, data folder)."
    from fastmask.recipes import resolve
    from fastmask.runners.run import run_recipe
    from fastmask.sources.demo import make_demo
    demo = make_demo(folder / 'demo', persons=persons, eval_persons=max(4, persons // 8), seed=0)
    return run_recipe(resolve('split_mobilenetv2', quick=True, epochs=epochs), demo, folder / 'runs', num_workers=0), demo


def pick_photo(run: Path, images: list[Path]) -> Path:
    "The first image in which the app finds a face (MTCNN), else the first."
    from fastmask.app.faces import FaceFinder
    from fastmask.app.portable import read_image
    finder = FaceFinder(run)
    if finder.mtcnn is None: return images[0]
    with tempfile.TemporaryDirectory() as tmp:
        for p in images[:40]:
            faces, _ = finder.find(read_image(p)[0], p, Path(tmp))
            if faces[0].box is not None: return p
    return images[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', type=Path, help='a finished run folder (default: train a quick one on demo data)')
    ap.add_argument('--photo', type=Path, help='the photo to upload (default: a demo eval portrait)')
    ap.add_argument('--out', type=Path, default=ROOT / 'docs' / 'app')
    ap.add_argument('--persons', type=int, default=60)
    ap.add_argument('--epochs', type=int, default=12)
    ap.add_argument('--width', type=int, default=1280)
    a = ap.parse_args(argv)
    from fastmask.app import browser
    if why := browser.missing(): raise SystemExit(f'no screenshots: {why}')
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault('FASTMASK_CACHE', str(tmp / 'cache'))
        t = time.perf_counter()
        run, demo = (a.run, None) if a.run else train(tmp, a.persons, a.epochs)
        print(f'run: {run} ({time.perf_counter() - t:.0f} s)')
        photo = a.photo or pick_photo(run, sorted((demo / 'eval' / 'images').glob('*.jpg')) if demo else [])
        if photo is None: raise SystemExit('give --photo with --run')
        bad = tmp / 'notes.txt'
        bad.write_text('not a photo\n')
        shots = {}
        with browser.served(run) as url, browser.chromium(width=a.width, height=900) as d:
            page = browser.AppPage(d, url).open()
            got = page.upload(photo)
            print(f"try it: {got['message']}; " + ', '.join(f"{f['label']} {f['p_text']}" for f in got['faces']))
            shots['try'] = page.screenshot(a.out / 'try.png')
            page.tab('Its mistakes')
            shots['mistakes'] = page.screenshot(a.out / 'mistakes.png')
            page.tab('The run')
            shots['run'] = page.screenshot(a.out / 'run.png')
            page.tab('Try it')
            print(f"bad upload: {page.upload(bad)['message']}")
            d.execute_script('window.scrollTo(0, 0)')
            shots['bad_upload'] = page.screenshot(a.out / 'bad_upload.png', full=False)
        from PIL import Image
        for k, p in shots.items():
            Image.open(p).save(p, optimize=True)
            print(f'wrote {p} ({p.stat().st_size // 1024} KB)')


if __name__ == '__main__':
    main()
