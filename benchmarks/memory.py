"""Peak memory (RSS) of a training run on a 2,700-person data set (18,900 photos), CPU, a few batches.

    python benchmarks/memory.py [--persons 2700] [--arch mobilenetv2_100] [--size 224] [--bs 64] [--batches 20]

Builds (or finds) the demo data set and its image cache, then trains the first `--batches` batches of one epoch
through the real path (`build_learner` + fastai fit) while a thread samples the main process's memory. Reports
the peak resident set (VmHWM), its anonymous part (the process's own memory) and its file-backed part (pages of
the memory-mapped image cache and of the shared libraries, reclaimable), and the largest loader worker.
"""
from __future__ import annotations

import argparse
import resource
import threading
import time

import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.data.imagecache import build_cache, human_bytes
from fastmask.data.block import default_workers
from fastmask.sources.demo import demo_dir
from fastmask.sources.open import open_data
from fastmask.recipes.registry import get_recipe, override, quick
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime


def status() -> dict[str, int]:
    "Memory fields of /proc/self/status, in bytes."
    out = {}
    for line in open('/proc/self/status'):
        k, _, v = line.partition(':')
        if k in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile', 'RssShmem'): out[k] = int(v.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    "Peak of each /proc/self/status memory field, sampled every 50 ms."
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.stop = {}, threading.Event()
    def run(self):
        while not self.stop.is_set():
            for k, v in status().items(): self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(0.05)


class StopAfter(Callback):
    "End the fit after `n` training batches."
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.training and self.iter + 1 >= self.n: raise CancelFitException()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--persons', type=int, default=2700)
    ap.add_argument('--data', default=None, help='competition-layout folder (default: a demo with --persons)')
    ap.add_argument('--arch', default='mobilenetv2_100')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--batches', type=int, default=20)
    ap.add_argument('--workers', type=int, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t = time.perf_counter()
    data = a.data or demo_dir(persons=a.persons, eval_persons=0)
    src = open_data(data)
    print(f'{src.root}: {src.train.person.nunique()} persons, {len(src.train)} photos '
          f'(ready in {time.perf_counter() - t:.0f} s)', flush=True)
    t = time.perf_counter()
    c = build_cache(src.train['path'], a.size)
    print(f'image cache: {len(c)} images at {a.size}px, {human_bytes(c.nbytes)} on disk '
          f'(built or found in {time.perf_counter() - t:.0f} s)', flush=True)
    workers = default_workers() if a.workers is None else a.workers
    base = status()
    s = Sampler()
    s.start()
    r = override(quick(get_recipe('baseline_mobilenetv2')), arch=a.arch, size=a.size, bs=a.bs, epochs=1)
    learn = build_learner(r, src, 'all', runtime=Runtime(num_workers=workers))
    t = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=StopAfter(a.batches))
    dt = time.perf_counter() - t
    s.stop.set()
    s.join()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    p = s.peak
    print(f'{a.arch} at {a.size}px, bs {a.bs}, {a.batches} training batches in {dt:.0f} s, workers {workers}:')
    print(f'  before training: RSS {human_bytes(base["VmRSS"])}')
    print(f'  peak RSS (VmHWM) {human_bytes(status()["VmHWM"])}: own memory (RssAnon) peak {human_bytes(p["RssAnon"])}, '
          f'file-backed (RssFile: libraries + cache pages) peak {human_bytes(p["RssFile"])}')
    print(f'  largest finished loader worker (max RSS): {human_bytes(kids)}')


if __name__ == '__main__':
    main()
