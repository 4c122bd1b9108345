"""Loader overhead: one training epoch's wall time against the pure model-step time on the same batches in memory.

    python benchmarks/epoch.py [--data DIR] [--arch mobilenetv2_100] [--size 96] [--bs 64] [--workers N]

Both passes use the same fastai Learner (model, optimizer, callbacks); the first pulls its batches from fastmask's
loader (cache + batch augmentation) and records them, the second replays the recorded batches from memory.
The ratio epoch / pure-step is the loader's overhead (target <= 1.15).
"""
from __future__ import annotations

import argparse
import time

import torch
from fastai.callback.core import Callback

from fastmask.data.block import default_workers
from fastmask.sources.demo import demo_dir
from fastmask.recipes.registry import get_recipe, override, quick
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime


class TimeTrain(Callback):
    "Wall time of the training phase of each epoch (validation excluded); optionally keeps the batches."
    order = 99
    def __init__(self, keep: bool = False): self.keep, self.times, self.batches = keep, [], []
    def before_train(self): self.t = time.perf_counter()
    def after_train(self): self.times.append(time.perf_counter() - self.t)
    def after_batch(self):
        if self.keep and self.training: self.batches.append((self.xb, self.yb))


def replay(learn, batches) -> float:
    "Seconds to run the Learner's training step on batches already in memory (same callbacks, no loader)."
    learn.model.train()
    learn.training = True
    learn('before_train')
    t = time.perf_counter()
    for i, (xb, yb) in enumerate(batches): learn.one_batch(i, xb + yb)
    dt = time.perf_counter() - t
    learn('after_train')
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='competition-layout folder (default: the 300-person demo)')
    ap.add_argument('--arch', default='mobilenetv2_100')
    ap.add_argument('--size', type=int, default=96)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--workers', type=int, default=None)
    ap.add_argument('--repeats', type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = a.data or demo_dir(persons=300, eval_persons=60)
    workers = default_workers() if a.workers is None else a.workers
    r = override(quick(get_recipe('baseline_mobilenetv2')), arch=a.arch, size=a.size, bs=a.bs, epochs=1)
    learn = build_learner(r, data, 'all', runtime=Runtime(num_workers=workers))
    print(f'{a.arch} at {a.size}px, bs {a.bs}, workers {workers}, torch threads 1, '
          f'{len(learn.dls.train)} training batches per epoch')
    learn.fit(1, 1e-3, cbs=TimeTrain())                       # warm-up: builds the cache, first allocations
    rec = TimeTrain(keep=True)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=rec)
    batches = rec.batches
    epoch, step = [rec.times[-1]], []
    for _ in range(a.repeats):
        learn.remove_cbs([c for c in learn.cbs if isinstance(c, TimeTrain)])
        learn.create_opt()
        with learn.no_bar(), learn.no_logging(): step.append(replay(learn, batches))
        t = TimeTrain()
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=t)
        epoch.append(t.times[-1])
    e, s = min(epoch), min(step)
    print(f'  training epoch from the loader : {e:7.2f} s  (best of {len(epoch)}: {", ".join(f"{x:.2f}" for x in epoch)})')
    print(f'  same batches from memory       : {s:7.2f} s  (best of {len(step)}: {", ".join(f"{x:.2f}" for x in step)})')
    print(f'  epoch / pure model-step ratio  : {e / s:.3f}  (target <= 1.15)')


if __name__ == '__main__':
    main()
