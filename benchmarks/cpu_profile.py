"""Where a CPU training epoch's time goes: reading images (cache or JPEG decode), batch augmentation, forward,
backward, the optimizer step and fastai's own per-batch work, for one task model of a recipe, on this processor.

    python benchmarks/cpu_profile.py [--recipe cpu_split_lite0] [--task gender] [--data DIR|CSV] [--size 160]
                                     [--bs 32] [--batches 12] [--precision auto] [--channels-last/--no-channels-last]

Prints the processor (model name; AVX2 / AVX-512 / avx512_bf16 / AMX flags; ONEDNN_MAX_CPU_ISA if set), the load
average, and one row per part: ms a batch, ms an image, share of the whole fastai step. "fastai loop" is what the
real `learn.fit` costs beyond the parts measured alone (callbacks, recorder, metrics). To see an AVX2-only
processor on an AVX-512 machine, run it with `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN's kernels only; torch's own
vectorised code still uses what the CPU has), and say so beside the figures.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.recipes import resolve
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime, cpu_flags


def processor() -> str:
    "The CPU's model name and the instruction sets that decide its speed."
    name = next((ln.split(':', 1)[1].strip() for ln in Path('/proc/cpuinfo').read_text().splitlines()
                 if ln.startswith('model name')), 'unknown CPU') if Path('/proc/cpuinfo').exists() else 'unknown CPU'
    flags = cpu_flags()
    sets = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile') if f in flags]
    isa = os.environ.get('ONEDNN_MAX_CPU_ISA')
    return f"{name}, {os.cpu_count()} cores, {' '.join(sets) or 'no AVX2'}" + (f'; ONEDNN_MAX_CPU_ISA={isa}' if isa else '')


def timed(f, n: int) -> float:
    "Seconds a call of `f` takes, the mean of `n` calls after one warm-up."
    f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n


class StopAfter(Callback):
    "Stop a fit after `n` training batches (and time them, after `warmup`)."
    order = 100
    def __init__(self, n: int, warmup: int = 2): self.n, self.warmup, self.seen, self.t0 = n, warmup, 0, None
    def after_batch(self):
        if not self.training: return
        self.seen += 1
        if self.seen == self.warmup: self.t0 = time.perf_counter()
        if self.seen == self.warmup + self.n:
            self.dt = (time.perf_counter() - self.t0) / self.n
            raise CancelFitException


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--recipe', default='cpu_split_lite0')
    ap.add_argument('--task', default='gender')
    ap.add_argument('--data', default=None, help='a layout or labels CSV (default: a 60-person demo set in a temp folder)')
    ap.add_argument('--size', type=int, default=160)
    ap.add_argument('--bs', type=int, default=32)
    ap.add_argument('--batches', type=int, default=12)
    ap.add_argument('--precision', default='auto')
    ap.add_argument('--channels-last', dest='channels_last', action=argparse.BooleanOptionalAction, default=None)
    a = ap.parse_args()
    data = a.data
    if data is None:
        from fastmask.sources.demo import make_demo
        data = make_demo(Path(tempfile.mkdtemp(prefix='fastmask-profile-')) / 'demo', persons=60, eval_persons=0, seed=0)
    rt = Runtime(precision=a.precision, channels_last=a.channels_last, num_workers=0)
    r = resolve(a.recipe, size=a.size, bs=a.bs, pretrained=False, head_init='', epochs=1, freeze_epochs=0)
    learn = build_learner(r, data, a.task, runtime=rt)
    dl, n = learn.dls.train, a.batches
    print(f'processor: {processor()}; torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'load average {os.getloadavg()[0]:.2f}')
    print(f'{a.recipe} ({r.arch}), task {a.task}, {a.size} px, batch {a.bs}: {learn.speed}')

    raw, tfms = [], dl.after_batch
    dl.after_batch = lambda b: b                            # images as read (cache or decode), before augmentation
    it = iter(dl)
    t0 = time.perf_counter()
    for _ in range(n): raw.append(next(it))
    t_read = (time.perf_counter() - t0) / n
    dl.after_batch = tfms
    t_aug = timed(lambda: tfms(raw[0]), n)
    xb, yb = tfms(raw[0])

    model, loss_func = learn.model.train(), learn.loss_func
    learn.create_opt()
    if learn.speed['channels_last']:
        model.to(memory_format=torch.channels_last)
        xb = xb.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast('cpu', dtype=torch.bfloat16) if learn.speed['precision'] == 'bf16' else None
    def fwd():
        if amp is None: return model(xb)
        with amp: return model(xb)
    t_fwd = timed(lambda: fwd(), n)
    def fwd_bwd():
        loss = loss_func(fwd().float(), yb)
        loss.backward()
    t_fb = timed(fwd_bwd, n)
    t_step = timed(lambda: (learn.opt.step(), learn.opt.zero_grad()), n)
    stop = StopAfter(n)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=[stop])
    t_fit = stop.dt
    parts = [('read images (cache / decode)', t_read), ('batch augmentation', t_aug), ('forward', t_fwd),
             ('backward', t_fb - t_fwd), ('optimizer step', t_step)]
    parts.append(('fastai loop (the rest)', max(0.0, t_fit - sum(t for _, t in parts))))
    print(f"\n{'part':<30} {'ms/batch':>9} {'ms/image':>9} {'share':>7}")
    for name, t in parts:
        print(f'{name:<30} {1000 * t:9.1f} {1000 * t / a.bs:9.2f} {100 * t / t_fit:6.1f}%')
    print(f"{'whole fastai step (fit)':<30} {1000 * t_fit:9.1f} {1000 * t_fit / a.bs:9.2f} {100.0:6.1f}%")
    print(f'\nepoch of {len(dl)} batches: about {t_fit * len(dl):.1f} s; load average {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
