"""How far decision thresholds alone could carry a model on another face set: macro F1 of a `fastmask evaluate`
output as predicted, with per-class logit offsets fitted on half of its people and scored on the other half (what
a few labelled target faces would buy), and with offsets fitted on all of its own labels (a ceiling: no threshold,
prior correction or calibration lever can beat it, since it chose the thresholds with the answers).

    python benchmarks/decision_ceiling.py RUN/eval_NAME/predictions.csv [...] [--tasks gender,age] [--seed 0]

The offsets are `fastmask.inference.calibration.fit_offsets` (what `calibrate=age` fits on the validation
people). A ceiling below a target says the target needs other features (other training faces, another model), not
other decisions. Reads CSVs only: no model, no training.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.inference.calibration import apply_offsets, fast_macro_f1, fit_offsets
from fastmask.labels import task_names

#: the task heads it reads (`prob_{task}_{k}` and `true_{task}` columns)
TASKS = ('mask', 'gender', 'age')


def task_arrays(df: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray] | None:
    "Truth and probabilities of one task in an evaluate predictions.csv; None when the file lacks them."
    cols = [f'prob_{task}_{k}' for k in range(len(task_names(task)))]
    if f'true_{task}' not in df or not all(c in df for c in cols): return None
    return df[f'true_{task}'].to_numpy(int), df[cols].to_numpy(np.float64)


def ceiling(y: np.ndarray, p: np.ndarray, seed: int = 0) -> dict:
    "Macro F1 as predicted, with offsets from the other half (mean of both halves), and with offsets from all labels."
    n = p.shape[1]
    f1 = lambda idx, b: fast_macro_f1(y[idx], apply_offsets(p[idx], b).argmax(1), n)
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = order[: len(y) // 2], order[len(y) // 2:]
    half = (f1(b, fit_offsets(p[a], y[a])) + f1(a, fit_offsets(p[b], y[b]))) / 2
    every = np.arange(len(y))
    best = fit_offsets(p, y)
    return dict(n=len(y), as_predicted=f1(every, np.zeros(n)), half_fitted=half, ceiling=f1(every, best),
                offsets=np.round(best, 2).tolist())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('predictions', nargs='+', type=Path, help='predictions.csv files written by fastmask evaluate')
    ap.add_argument('--tasks', default='gender,age', help='comma-separated tasks (mask, gender, age)')
    ap.add_argument('--seed', type=int, default=0, help='the random halving of the people')
    a = ap.parse_args(argv)
    tasks = [t for t in a.tasks.split(',') if t]
    if bad := [t for t in tasks if t not in TASKS]: ap.error(f"unknown task {bad[0]} (one of {', '.join(TASKS)})")
    print('| predictions | task | n | as predicted | offsets from the other half | ceiling (offsets from all labels) |')
    print('|---|---|---|---|---|---|')
    for path in a.predictions:
        if not path.is_file(): ap.error(f'{path}: not found')
        df = pd.read_csv(path)
        for t in tasks:
            if (arrs := task_arrays(df, t)) is None: continue
            r = ceiling(*arrs, seed=a.seed)
            print(f"| {path} | {t} | {r['n']} | {r['as_predicted']:.3f} | {r['half_fitted']:.3f} | {r['ceiling']:.3f} |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
