"""Label-noise finding: recall and precision of `fastmask data noise` on data with injected label errors.

    python benchmarks/noise.py [--data DIR | --persons 120] [--flip 0.05] [--swap 0.05] [--recipe split_effnet_lite0]
                               [--tasks mask gender] [--folds 5] [--size 64] [--epochs 5] [--lr 1e-3] [--bs 16]
                               [--no-quick] [--threads 1] [--keep DIR] [--json FILE]

A COPY of the data (by default a fresh demo set of `--persons` people) gets injected label errors: `--flip` of the
people have their gender flipped (folder renamed, train.csv updated) and `--swap` of the others have their
`incorrect_mask` and `normal` photos swapped. `data noise` (`fastmask.noise.find_noise`) then trains the recipe
k-fold by person and ranks suspects; the script prints, per task and over all, the recall of the injected errors
among the top k suspects (k = the number injected, and 2x) and the precision and recall of cleanlab's flagged
issues. The defaults (120 demo people, 5 folds, 64 px, 5 epochs, mask and gender models of the offline-pretrained
EfficientNet-Lite0) take about 5-10 minutes on 2 CPU cores; on a GPU use `--no-quick` (the recipe as it is).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.labels import GENDERS, parse_person_folder, person_folder_name
from fastmask.sources.competition import person_photos

#: what the benchmark changes in --quick mode (a few minutes on 2 CPU cores)
QUICK = dict(size=64, epochs=5, lr=1e-3, bs=16)


def inject(root: Path, flip: float, swap: float, seed: int = 0) -> dict[str, set]:
    "Flip the gender of `flip` of the people and swap incorrect_mask/normal of `swap` others, in place: the truth."
    csv, images = root / 'train' / 'train.csv', root / 'train' / 'images'
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    order = np.random.default_rng(seed).permutation(len(df))
    nf = max(1, round(flip * len(df))) if flip > 0 else 0
    ns = max(1, round(swap * len(df))) if swap > 0 else 0
    truth = dict(gender=set(), mask=set())
    for i in order[:nf]:
        p = parse_person_folder(df.at[i, 'path'])
        new = person_folder_name(p.id, 1 - p.gender, p.race, p.age)
        (images / df.at[i, 'path']).rename(images / new)
        df.at[i, 'path'], df.at[i, 'gender'] = new, GENDERS[1 - p.gender]
        truth['gender'].add(p.id)
    for i in order[nf:nf + ns]:
        folder = images / df.at[i, 'path']
        photos = person_photos(folder)
        a, b = photos['incorrect_mask'], photos['normal']
        tmp = folder / '.swap.tmp'
        a.rename(tmp)
        b.rename(folder / f'incorrect_mask{b.suffix}')
        tmp.rename(folder / f'normal{a.suffix}')
        truth['mask'] |= {str(folder / f'incorrect_mask{b.suffix}'), str(folder / f'normal{a.suffix}')}
    df.to_csv(csv, index=False)
    return truth


def measure(table: pd.DataFrame, truth: dict[str, set]) -> dict:
    "Recall among the top k (k = injected, 2x injected) per task and overall; precision/recall of the flagged issues."
    key = np.where(table['task'] == 'mask', table['path'], table['person'])
    hit = np.array([k in truth.get(t, ()) for t, k in zip(table['task'], key)])
    res = {}
    for name, sel in [(t, (table['task'] == t).to_numpy()) for t in truth if truth[t]] + [('all', np.ones(len(table), bool))]:
        n = sum(len(truth[t]) for t in truth) if name == 'all' else len(truth[name])
        h, flagged = hit[sel], table['issue'].to_numpy()[sel]      # table is ranked: issues first, then by score
        res[name] = {'injected': n, f'recall@{n}': round(h[:n].sum() / n, 3), f'recall@{2 * n}': round(h[:2 * n].sum() / n, 3),
                     'flagged': int(flagged.sum()), 'precision_flagged': round(h[flagged].sum() / max(flagged.sum(), 1), 3),
                     'recall_flagged': round(h[flagged].sum() / n, 3)}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='competition-layout folder to copy (default: a fresh demo set)')
    ap.add_argument('--persons', type=int, default=120, help='people of the demo set (without --data)')
    ap.add_argument('--flip', type=float, default=0.05, help='fraction of people with their gender flipped')
    ap.add_argument('--swap', type=float, default=0.05, help='fraction of people with incorrect_mask/normal swapped')
    ap.add_argument('--recipe', default='split_effnet_lite0')
    ap.add_argument('--tasks', nargs='+', default=['mask', 'gender'])
    ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--size', type=int, default=None, help='image size (quick default 64)')
    ap.add_argument('--epochs', type=int, default=None, help='epochs (quick default 5)')
    ap.add_argument('--lr', type=float, default=None, help='learning rate (quick default 1e-3)')
    ap.add_argument('--bs', type=int, default=None, help='batch size (quick default 16)')
    ap.add_argument('--threads', type=int, default=1,
                    help='torch CPU threads (competing threads slow small runs on a shared machine; 0: torch default)')
    ap.add_argument('--no-quick', dest='quick', action='store_false', help='the recipe as it is (GPU), not --quick')
    ap.add_argument('--workers', type=int, default=0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--keep', default=None, help='folder to keep the noisy copy, runs and noise output in')
    ap.add_argument('--json', default=None, help='also write the figures to this JSON file')
    a = ap.parse_args(argv)
    import torch
    from fastmask.sources.demo import make_demo
    from fastmask.recipes import resolve
    from fastmask.runspec import RunSpec
    from fastmask.runtime import Runtime
    from fastmask.tools.noise import find_noise
    if a.threads: torch.set_num_threads(a.threads)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix='fastmask-noise-'))
    data = work / 'data'
    if a.data: shutil.copytree(a.data, data)
    else: make_demo(data, persons=a.persons, eval_persons=0, seed=a.seed)
    truth = inject(data, a.flip, a.swap, a.seed)
    changes = {k: getattr(a, k) if getattr(a, k) is not None else (v if a.quick else None) for k, v in QUICK.items()}
    t0 = time.time()
    ch = dict(changes, tasks=tuple(a.tasks))
    spec = RunSpec.build(resolve(a.recipe, quick=a.quick, **ch), data, out=work / 'runs', overrides=ch,
                         runtime=Runtime(num_workers=a.workers))
    out = find_noise(spec, a.folds, work / 'noise')
    wall = time.time() - t0
    table = pd.read_csv(out / 'label_issues.csv', dtype={'person': str, 'path': str}, keep_default_na=False)
    table['issue'] = table['issue'].astype(str) == 'True'
    res = dict(measure(table, truth), wall_s=round(wall, 1), load_avg=[round(x, 2) for x in os.getloadavg()],
               args=vars(a), output=str(out))
    for k, v in res.items():
        if isinstance(v, dict) and k != 'args': print(f'{k:>7}: ' + '  '.join(f'{m} {x}' for m, x in v.items()))
    print(f'wall {wall:.0f} s, load average {res["load_avg"]}, output {out if a.keep else "deleted (--keep DIR keeps it)"}')
    if a.json: Path(a.json).write_text(json.dumps(res, indent=2, default=str) + '\n')
    if not a.keep: shutil.rmtree(work, ignore_errors=True)  # pass --keep DIR to look at suspects.png
    return res


if __name__ == '__main__':
    main()
