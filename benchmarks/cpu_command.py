"""The whole command, per image-epoch: wall time of `fastmask recipe SPEC --tasks gender` on a labelled-faces CSV
(probe head, the epochs with their validation passes, scoring) divided by training images x epochs, and its ratio to a bare
fp32 timm train step of the same backbone measured in the same process, the best of one timing before the runs and
the rest after them (issue "Rapid on any laptop CPU": today's `cpu_split_lite0` was 1.08x on an AVX2 EPYC).

    python benchmarks/cpu_command.py --data FACES.csv [--eval HELD_OUT.csv] [--task gender] [--out DIR] [SPEC ...]

FACES.csv: `path,gender,age` (`benchmarks/transfer.py`'s `utk_csv(1000, ...)`). Prints the processor, the load
average before and after each run, and one row per spec: wall seconds, ms an image-epoch, x the bare step, the
task's validation F1 and, with `--eval`, its F1 on other labelled faces scored by `fastmask evaluate` after the timing
(`utk_csv(2000, seed=7, exclude=FACES.csv)`: faces no run trained on or chose its epoch by; 150 validation faces
are too few to tell settings apart, and the validation F1 is the best of the validated epochs). Runs go to `--out`
(a fresh temp folder by default), one at a time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_levers import bare_step  # noqa: E402
from cpu_profile import processor  # noqa: E402

from fastmask.io import read_json  # noqa: E402
from fastmask.recipes.spec import resolve_spec  # noqa: E402
from fastmask.runners.run import run_recipe  # noqa: E402
from fastmask.tools.evaluate import evaluate  # noqa: E402

DEFAULT = ['cpu_split_lite0', 'cpu_fast_lite0']


def image_epochs(summary: dict, recipe, task: str) -> int:
    "Training images x epochs of one task model (its logged epochs; `people_photos` draws fewer a person)."
    epochs = summary.get('epochs', {}).get(task) or recipe.epochs
    return int(summary['n_train']) * int(epochs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('specs', nargs='*', default=DEFAULT)
    ap.add_argument('--data', required=True, help='a labelled-faces CSV (path,gender,age)')
    ap.add_argument('--task', default='gender')
    ap.add_argument('--eval', default=None, help='other labelled faces (a labels CSV) every run is also scored on')
    ap.add_argument('--out', default=None)
    ap.add_argument('--batches', type=int, default=8, help='batches of the bare step timing')
    ap.add_argument('--rounds', type=int, default=3, help='bare step timings (one before the runs, the rest after): the best counts')
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix='fastmask-command-'))
    print(f'processor: {processor()}; torch {torch.__version__}, {torch.get_num_threads()} threads', flush=True)
    first = resolve_spec(a.specs[0])
    bare_times = [bare_step(first.arch, first.size, first.bs, a.batches)]
    rows = []
    for spec in a.specs:
        r = resolve_spec(spec, tasks=(a.task,))
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        run = run_recipe(r, a.data, out)
        wall = time.perf_counter() - t0
        s = read_json(run / 'summary.json')
        n = image_epochs(s, r, a.task)   # 0 for a linear probe (no training epochs)
        rows.append([spec, wall, wall / n if n else float('nan'), s.get(f'valid_f1_{a.task}'), load0, os.getloadavg()[0], run])
    bare_times += [bare_step(first.arch, first.size, first.bs, a.batches) for _ in range(a.rounds - 1)]
    bare = min(bare_times)
    for row in rows:   # after the timings: scoring is not part of a run's wall time
        row[-1] = evaluate(row[-1], a.eval).get(f'f1_{a.task}') if a.eval else None
    print(f'\nbare fp32 step: {first.arch} {first.size}px bs{first.bs}: {1000 * bare:.1f} ms an image, best of '
          f'{len(bare_times)} timings of {a.batches} batches ({", ".join(f"{1000 * t:.1f}" for t in bare_times)}; '
          f'load average {os.getloadavg()[0]:.2f})')
    held = f'F1 {Path(a.eval).stem}' if a.eval else ''
    print(f"\n{'spec':<40} {'wall s':>7} {'ms/img-epoch':>13} {'x bare':>7} {'valid F1 ' + a.task:>15}  load before/after  {held}")
    for spec, wall, per, f1, l0, l1, ev in rows:
        print(f'{spec:<40} {wall:7.0f} {1000 * per:13.1f} {per / bare:7.2f} {f1 if f1 is not None else float("nan"):15.4f}  '
              f'{l0:.2f}/{l1:.2f}' + (f'          {ev:.4f}' if ev is not None else ''))
    print(f'\nruns under {out}')


if __name__ == '__main__':
    main()
