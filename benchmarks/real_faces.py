"""Quality on real faces: the mask task on real masked photos, gender / age / 18 classes on practice data (All-Age-Faces and UTKFace by default).

    OMP_NUM_THREADS=1 python benchmarks/real_faces.py [--size 96] [--epochs 3] [--persons 1000] [--part all]

Needs ../shared/data (maskfaces/, utkface/) beside the project. Uses the split EfficientNet-Lite0 recipe from
offline ImageNet weights when they are installed (`fastmask[lite0]`), else split MobileNetV2 from random init,
and says which. Prints one table; targets: mask >= 0.80, gender >= 0.85, age group >= 0.60 (macro F1).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from fastmask.io import read_json
from fastmask.labels import MASKS, REPORT_AGE_CUT, age_group
from fastmask.recipes.registry import resolve
from fastmask.runners.run import run_recipe
from transfer import PRACTICE_FACES   # benchmarks/ is on the path of a script run from it

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
TARGETS = {'mask': 0.80, 'gender': 0.85, 'age': 0.60}


def pick_recipe() -> tuple[str, bool, str]:
    "(recipe, pretrained, words): split Lite0 from offline weights when available, else split MobileNetV2 from scratch."
    try:
        from fastmask.models.lite import available
        from fastmask.recipes.registry import get_recipe
        get_recipe('split_effnet_lite0')
        if available(): return 'split_effnet_lite0', True, 'EfficientNet-Lite0, ImageNet weights (offline)'
    except Exception: pass
    return 'split_mobilenetv2', False, 'MobileNetV2, random init (no offline weights installed)'


def mask_part(recipe: str, pretrained: bool, a, out: Path) -> list[dict]:
    "Mask task trained and validated on the real masked faces, split by source photo."
    r = resolve(recipe, size=a.size, epochs=a.epochs, bs=a.bs, lr=a.lr, pretrained=pretrained, tasks=('mask',),
                crop=0.0, patience=None)  # face crops: squish the whole crop, no portrait centre crop
    t0 = time.time()
    run = run_recipe(r, SHARED / 'maskfaces' / 'labels.csv', out, num_workers=a.workers)
    vp = pd.read_csv(run / 'valid_preds.csv')
    per = f1_score(vp['mask'], vp['pred_mask'], average=None, labels=[0, 1, 2])
    extra = ', '.join(f'{m} {v:.3f}' for m, v in zip(MASKS, per))
    return [dict(task='mask', data=f'maskfaces (real), {len(vp)} valid crops', f1=float(per.mean()), extra=extra,
                 minutes=(time.time() - t0) / 60, run=str(run))]


def subset_csv(proxy: Path, photos: int, csv: Path) -> Path:
    "A labels CSV with `photos` of each person's seven (incorrect, normal, then random mask photos): a cheaper epoch."
    from fastmask.sources.competition import read_train
    df = read_train(proxy)
    rng = np.random.default_rng(0)
    keep = []
    for _, g in df.groupby('person', sort=True):
        worn = g[g['mask'] == 0].index.to_numpy()
        keep += list(g[g['mask'] != 0].index) + list(rng.choice(worn, max(0, photos - 2), replace=False))
    sub = df.loc[sorted(keep), ['path', 'person', 'mask', 'gender', 'age']]
    csv.parent.mkdir(parents=True, exist_ok=True)
    sub.to_csv(csv, index=False)
    return csv


def people_part(recipe: str, pretrained: bool, a, out: Path) -> list[dict]:
    "Mask, gender and age models of the split recipe on practice data (`--practice-faces`), validated on held-out people."
    stem = 'utkface-proxy' if a.practice_faces == 'utkface' else f'{a.practice_faces}-proxy'
    proxy = Path(a.proxy) if a.proxy else out / f'{stem}-p{a.persons}-s0'
    t0 = time.time()
    if not (proxy / 'train' / 'train.csv').exists():
        from fastmask.sources.practice import make_proxy
        info = make_proxy(PRACTICE_FACES[a.practice_faces], proxy, persons=a.persons, eval_persons=a.eval_persons, seed=0)
        print(f"built {proxy}: {info['wall_time_s']} s, detector {info['detector']}, "
              f"{info['template_fallbacks']} template fallbacks", flush=True)
    build_min = (time.time() - t0) / 60
    data = proxy if a.photos == 7 else subset_csv(proxy, a.photos, out / f'{proxy.name}-{a.photos}photos.csv')
    r = resolve(recipe, size=a.size, epochs=a.epochs, bs=a.bs, lr=a.lr, pretrained=pretrained, patience=None,
                crop=a.crop)
    t0 = time.time()
    run = run_recipe(r, data, out, num_workers=a.workers)
    minutes = (time.time() - t0) / 60
    s, vp = read_json(run / 'summary.json'), pd.read_csv(run / 'valid_preds.csv')
    n = f"{vp['person'].nunique()} held-out people ({len(vp)} photos)"
    g = f1_score(vp['gender'], vp['pred_gender'], average=None, labels=[0, 1])
    a60 = f1_score(age_group(vp['age'].to_numpy(), 60), vp['pred_age'], average='macro')
    a57 = f1_score(age_group(vp['age'].to_numpy(), REPORT_AGE_CUT), vp['pred_age'], average='macro')
    m = f1_score(vp['mask'], vp['pred_mask'], average='macro')
    rows = [dict(task='gender', data=f'{a.practice_faces} practice, {n}', f1=float(g.mean()), extra=f'male {g[0]:.3f}, female {g[1]:.3f}',
                 minutes=minutes, run=str(run)),
            dict(task='age', data=f'{a.practice_faces} practice, {n}', f1=float(a60),
                 extra=f'scored at cut 60; {a57:.3f} at the trained cut {REPORT_AGE_CUT}', minutes=minutes, run=str(run)),
            dict(task='mask (synthetic)', data=f'{a.practice_faces} practice, {n}', f1=float(m), extra='', minutes=minutes, run=str(run)),
            dict(task='18 classes', data=f'{a.practice_faces} practice, {n}', f1=float(s['valid_f1']),
                 extra=f"eval people: {s['eval_f1']:.3f}" if 'eval_f1' in s else '', minutes=minutes, run=str(run))]
    rows[0]['extra'] += f'; practice data built in {build_min:.1f} min' if build_min > 0.1 else ''
    return rows


def table(rows: list[dict], words: str, a) -> str:
    "The results as a Markdown table."
    lines = [f'model: {words}; images {a.size}x{a.size}; {a.epochs} epochs; batch {a.bs}; lr {a.lr}; '
             f'practice data: {a.persons} people, {a.photos} photos each, centre crop {a.crop:.3f} of the width', '',
             '| task | data (validation) | macro F1 | target | per class / notes | train min |', '|---|---|---|---|---|---|']
    for r in rows:
        t = TARGETS.get(r['task'])
        ok = '' if t is None else (f'>= {t:.2f} ' + ('met' if r['f1'] >= t else 'missed'))
        lines.append(f"| {r['task']} | {r['data']} | {r['f1']:.3f} | {ok} | {r['extra']} | {r['minutes']:.1f} |")
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--part', choices=['mask', 'people', 'all'], default='all')
    p.add_argument('--size', type=int, default=96)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--persons', type=int, default=1000)
    p.add_argument('--eval-persons', type=int, default=200)
    p.add_argument('--proxy', help='an existing practice data folder (else built under --out)')
    p.add_argument('--practice-faces', default='mixed', choices=list(PRACTICE_FACES),
                   help='the faces a new practice set is built from (All-Age-Faces and UTKFace: mixed)')
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--photos', type=int, default=7, choices=range(2, 8), help='photos per practice person used (7: all)')
    p.add_argument('--crop', type=float, default=350 / 384, help="portrait centre crop (fraction of width; the report's 350/384)")
    p.add_argument('--out', default='runs/real_faces')
    a = p.parse_args(argv)
    if not SHARED.is_dir(): raise SystemExit(f'{SHARED} is absent: this benchmark needs the real-face data')
    recipe, pretrained, words = pick_recipe()
    print(f'recipe {recipe}: {words}', flush=True)
    out, rows = Path(a.out), []
    if a.part in ('mask', 'all'): rows += mask_part(recipe, pretrained, a, out)
    if a.part in ('people', 'all'): rows += people_part(recipe, pretrained, a, out)
    print(table(rows, words, a))
    for r in rows: print(f"{r['task']}: {r['run']}")


if __name__ == '__main__':
    main()
