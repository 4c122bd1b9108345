"""CPU training speed: plain fp32 against `auto` (fp32 + channels-last on an AVX-512 CPU) and bf16 autocast, side by side.

    python benchmarks/precision.py [--arch tf_efficientnet_lite0] [--size 128] [--bs 32] [--batches 30]
                                   [--f1-data ../shared/data/maskfaces/labels.csv] [--epochs 2]

1. images/s of training steps (forward, loss, backward, optimizer step) through a fastai Learner, both settings
   alternated in one process (warm-up excluded);
2. the same short real run with each setting (default: the real masked faces, mask task, `cpu_split_lite0`
   settings): valid macro F1 of both, which must agree within noise.
Prints the ratio and the load average.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from fastmask.io import read_json
from fastmask.recipes import resolve
from fastmask.runners.run import run_recipe
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime, cpu_bf16_fast, resolve_precision

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


def step_rate(recipe, data, batches: int, runtime: Runtime, warmup: int = 3) -> float:
    "Training images per second of `batches` steps after `warmup` steps."
    learn = build_learner(recipe, data, recipe.tasks[0], runtime=runtime)
    learn.model.train()
    learn.create_opt()
    xb, yb = learn.dls.one_batch()
    n, t = 0, None
    learn('before_fit')
    for i in range(warmup + batches):
        if i == warmup: t = time.perf_counter()
        learn._split((xb, yb))
        learn('before_batch')
        learn.pred = learn.model(*learn.xb); learn('after_pred')
        learn.loss_grad = learn.loss_func(learn.pred, *learn.yb); learn('after_loss')
        learn.loss_grad.backward(); learn.opt.step(); learn.opt.zero_grad()
        if i >= warmup: n += len(xb)
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--recipe', default='cpu_split_lite0')
    ap.add_argument('--size', type=int, default=128)
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--batches', type=int, default=30)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--f1-data', default=str(SHARED / 'maskfaces' / 'labels.csv'))
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--out', default='runs/bench-precision')
    a = ap.parse_args()
    print(f"CPU has native bf16: {cpu_bf16_fast()}; 'auto' resolves to {resolve_precision(Runtime(), 'cpu')}")
    data = Path(a.f1_data)
    common = dict(size=a.size, bs=a.bs, tasks=('mask',), crop=0.0, head_init='')
    settings = {'fp32': Runtime(precision='fp32', channels_last=False, num_workers=0), 'auto': Runtime(num_workers=0),
                'bf16': Runtime(precision='bf16', channels_last=True, num_workers=0)}
    rates = {k: [] for k in settings}
    load0 = os.getloadavg()[0]
    for _ in range(a.rounds):                       # alternate, so both see the same machine
        for k, s in settings.items(): rates[k].append(step_rate(resolve(a.recipe, **common), data, a.batches, s))
    best = {k: max(v) for k, v in rates.items()}
    print(f"training steps, {a.recipe} at {a.size} px, batch {a.bs}: " + ', '.join(f'{k} {v:.1f} img/s' for k, v in best.items())
          + f": auto {best['auto'] / best['fp32']:.2f}x, bf16 {best['bf16'] / best['fp32']:.2f}x fp32 (load {load0:.1f}-{os.getloadavg()[0]:.1f})")
    f1 = {}
    for k, s in settings.items():
        if k == 'bf16': continue
        ch = dict(common, epochs=a.epochs)
        ch.pop('head_init')
        t0 = time.time()
        run = run_recipe(resolve(a.recipe, **ch), data, Path(a.out), overrides=ch, runtime=s)
        f1[k] = (read_json(run / 'summary.json').get('valid_f1_mask'), time.time() - t0)
        print(f'{k}: valid mask macro F1 {f1[k][0]:.4f} in {f1[k][1] / 60:.1f} min ({run})', flush=True)
    print(f"whole run (probe head, {a.epochs} epochs, validation, eval): auto {f1['fp32'][1] / f1['auto'][1]:.2f}x faster than fp32; "
          f"F1 difference {f1['auto'][0] - f1['fp32'][0]:+.4f}")


if __name__ == '__main__':
    main()
