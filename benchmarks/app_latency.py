"""How long `fastmask app` takes to answer one photo on the CPU, for a Lite0 run (cpu_split_lite0: three models).

    python benchmarks/app_latency.py [--run RUN_DIR] [--photo FILE] [--repeats 10] [--size 160] [--threads N]

Without --run, a run folder with untrained mask, gender and age `tf_efficientnet_lite0` models at cpu_split_lite0's
160 px is written to a temporary folder (the time does not depend on the weights). It prints the one-off start (the
models and the face detector loaded) and, per photo, the whole answer as the page computes it (`app.answer.Answerer`:
the upload read and checked, saved, faces searched by MTCNN when facenet-pytorch is installed, cropped, the three
models, the boxes drawn): median and worst of --repeats after one warm-up, for 'find faces' and 'whole photo', on a
demo portrait (384x512) and the same photo scaled to 12 megapixels (a phone's). Not counted: the browser's upload
and Gradio's own round trip (measured once by the browser test: about 0.5 s a photo there).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def fake_lite0_run(folder: Path, size: int) -> Path:
    "A run folder holding untrained mask, gender and age Lite0 models (what cpu_split_lite0 trains), as RunDir names them."
    from fastmask.data.augment import REPORT_CROP
    from fastmask.models.backbones import create_model
    from fastmask.models.lite import ARCH
    from fastmask.rundir import RunDir, save_model
    rd = RunDir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for task, n in (('mask', 3), ('gender', 2), ('age', 3)):
        save_model(rd.model(task), create_model(ARCH, n, pretrained=False), arch=ARCH, task=task, n_out=n, size=size,
                   crop=REPORT_CROP, age_cut=60, head='linear', stats=((0.5,) * 3, (0.5,) * 3))
    return folder


def demo_photo(folder: Path) -> Path:
    "One demo portrait (384x512 JPEG) written into `folder`."
    from fastmask.sources.demo import make_demo
    demo = make_demo(folder / 'demo', persons=4, eval_persons=1, seed=1)
    return sorted((demo / 'eval' / 'images').glob('*.jpg'))[0]


def timed(answer, photo, whole: bool, repeats: int) -> tuple[float, float, str]:
    a = answer(photo, whole=whole)           # warm-up
    if a.error: raise SystemExit(a.error)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a = answer(photo, whole=whole)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), max(ts), a.message.rsplit(' (', 1)[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--run', type=Path, help='a finished run folder (default: an untrained Lite0 split run)')
    ap.add_argument('--photo', type=Path, help='a photo (default: a demo portrait)')
    ap.add_argument('--repeats', type=int, default=10)
    ap.add_argument('--size', type=int, default=160, help='input size of the untrained Lite0 models')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch\'s own)')
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault('FASTMASK_CACHE', str(tmp / 'cache'))
        run = a.run or fake_lite0_run(tmp / 'run', a.size)
        photo = a.photo or demo_photo(tmp)
        big = tmp / 'phone.jpg'
        im = Image.open(photo).convert('RGB')
        scale = (12e6 / (im.width * im.height)) ** 0.5
        im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC).save(big, quality=90)
        t = time.perf_counter()
        from fastmask.app.answer import Answerer
        answer = Answerer(run)
        start = time.perf_counter() - t
        meta = answer.predictor.meta
        print(f"run: {run if a.run else 'untrained Lite0 split run'} ({answer.predictor.n_models} models, {meta.get('arch')} "
              f"at {meta.get('size')} px); torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} at the start")
        print(f'start (models and face detector loaded once): {start:.1f} s; faces: {answer.finder.how}')
        print(f"{'photo':<26} {'faces':<12} {'median s':>9} {'worst s':>8}  answer")
        for p in (photo, big):
            w, h = Image.open(p).size
            for whole in (False, True):
                med, worst, how = timed(answer, p, whole, a.repeats)
                print(f"{f'{w}x{h} {p.suffix[1:]}':<26} {'whole photo' if whole else 'find faces':<12} {med:>9.3f} "
                      f"{worst:>8.3f}  {how}")


if __name__ == '__main__':
    main()
