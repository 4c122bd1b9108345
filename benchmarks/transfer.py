"""Transfer learning on real faces: the linear probe against fine-tuned recipes on the same backbone and split.

    python benchmarks/transfer.py [--part utk|mask|practice|all] [--recipes probe_lite0,cpu_split_lite0]
                                  [--set bn=train ...] [--faces 4000] [--persons 1000] [--out runs/bench-transfer]

Data (needs ../shared/data beside the project):
- utk: raw UTKFace crops as a labelled CSV (`--faces` random faces, gender + age), 15% of them held out;
- mask: real masked-face crops (maskfaces/labels.csv), split by source photo;
- practice: a practice set built from UTKFace (`fastmask data proxy`, `--persons` training people, adults like
  the competition: the default), 200 eval people, person split; the eval people are scored too.
Prints one row per (data, recipe): macro F1 per task (18 classes where the data has them), the gain over the probe,
wall time and the load average while it ran. Every figure comes from the run folders' summary.json.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.io import read_json
from fastmask.recipes import parse_set, resolve
from fastmask.runners.run import run_recipe

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


def utk_csv(n: int, out: Path, seed: int = 0, ages=(1, 116), exclude: Path | None = None) -> Path:
    """A labels CSV of `n` random UTKFace crops: path, gender (0 male, 1 female), age in years; `exclude`: a labels
    CSV whose faces are left out (held-out faces for runs trained on it, named `...-not-{its stem}.csv`)."""
    rows = []
    for p in sorted((SHARED / 'utkface' / 'images').glob('*.jpg')):
        parts = p.name.split('_')
        if len(parts) < 4 or not parts[0].isdigit() or parts[1] not in ('0', '1'): continue
        if ages[0] <= int(parts[0]) <= ages[1]: rows.append((str(p), int(parts[1]), int(parts[0])))
    df = pd.DataFrame(rows, columns=['path', 'gender', 'age'])
    if exclude is not None: df = df[~df['path'].isin(set(pd.read_csv(exclude)['path']))]
    df = df.sample(n=min(n, len(df)), random_state=seed).reset_index(drop=True)
    rest = f'-not-{Path(exclude).stem}' if exclude is not None else ''
    csv = out / f'utkface-{len(df)}-s{seed}{rest}.csv'
    csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False)
    return csv


def practice_set(persons: int, out: Path) -> Path:
    "A practice set from UTKFace in the competition layout (built once)."
    d = out / f'practice-p{persons}'
    if not (d / 'train' / 'train.csv').exists():
        from fastmask.sources.practice import make_proxy
        make_proxy(SHARED / 'utkface' / 'images', d, persons=persons, eval_persons=200, seed=0)
    return d


def run_one(name: str, data: Path, out: Path, changes: dict, workers: int | None) -> dict:
    "Run one recipe and return its scores, wall time and load average."
    r = resolve(name, **changes)
    t0, load0 = time.time(), os.getloadavg()[0]
    run = run_recipe(r, data, out, num_workers=workers, overrides=changes)
    s = read_json(run / 'summary.json')
    row = dict(recipe=name, minutes=round((time.time() - t0) / 60, 1),
               load=f'{load0:.1f}-{os.getloadavg()[0]:.1f}', run=str(run))
    row.update({k: v for k, v in s.items() if k.startswith(('valid_f1', 'eval_f1')) and isinstance(v, float)})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--part', default='all', choices=['utk', 'mask', 'practice', 'all'])
    ap.add_argument('--recipes', default='probe_lite0,cpu_split_lite0')
    ap.add_argument('--set', dest='sets', action='append', default=[], help='recipe field for every recipe, FIELD=VALUE')
    ap.add_argument('--faces', type=int, default=4000)
    ap.add_argument('--persons', type=int, default=1000)
    ap.add_argument('--workers', type=int, default=None)
    ap.add_argument('--out', default='runs/bench-transfer')
    ap.add_argument('--data-only', action='store_true', help="write the part's data (e.g. utkface-4000-s0.csv) and stop")
    a = ap.parse_args()
    out = Path(a.out)
    changes = dict(parse_set(s) for s in a.sets)
    datas = {}
    if a.part in ('utk', 'all'): datas['utk'] = (utk_csv(a.faces, out), dict(crop=0.0, size=160))
    if a.data_only:
        if a.part in ('practice', 'all'): practice_set(a.persons, out)
        return print('\n'.join(str(d) for d, _ in datas.values()))
    if a.part in ('mask', 'all'): datas['mask'] = (SHARED / 'maskfaces' / 'labels.csv', dict(crop=0.0, size=160, tasks=('mask',)))
    if a.part in ('practice', 'all'): datas['practice'] = (practice_set(a.persons, out), {})
    rows = []
    for dname, (data, base) in datas.items():
        for name in a.recipes.split(','):
            ch = {**base, **changes}
            if name.startswith('probe') and 'size' in base: ch['size'] = base['size']
            row = dict(data=dname, **run_one(name, data, out / dname, ch, a.workers))
            rows.append(row)
            print(pd.DataFrame([row]).to_string(index=False), flush=True)
    df = pd.DataFrame(rows)
    probe = {d: g.iloc[0] for d, g in df.groupby('data')}
    for c in [c for c in df.columns if c.startswith(('valid_f1', 'eval_f1'))]:
        df[f'{c}_vs_probe'] = [np.round(r[c] - probe[r['data']][c], 4) if c in probe[r['data']] else np.nan
                               for _, r in df.iterrows()]
    print('\n' + df.drop(columns=['run']).to_string(index=False))


if __name__ == '__main__':
    main()
