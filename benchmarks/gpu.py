"""Throughput of `fastmask recipe` itself against the bare model-step ceiling of the same model, in one run.

    python benchmarks/gpu.py [--arch mobilenetv2_100,efficientnet_b3] [--size 224] [--bs 64] [--steps 30]
                             [--warmup 5] [--recipe baseline_mobilenetv2] [--data DIR] [--persons N]
                             [--precision auto|fp32|bf16|fp16] [--channels-last/--no-channels-last] [--compile]
                             [--workers N] [--json FILE]

For each architecture (random weights: no network needed):

- fit: images/s of the real fastai fit -- the recipe's Learner from `runners.train.build_learner` with its
  callbacks (speed: autocast / GradScaler, channels-last, compile; sampler, ...), the decoded-image cache, batch
  augmentation on the device, `learn.fit` -- over `--steps` training batches after `--warmup` batches. The clock
  runs from the end of the last warm-up batch to the end of the last timed batch, and only while training
  (validation between epochs is left out); it includes loading the timed batches.
- ceiling: a plain loop -- forward, loss, backward, optimizer step -- of the same model (after the fit: same
  weights, memory format, compile), the same optimizer (`learn.opt`), loss, batch size, precision (autocast;
  GradScaler for fp16) on one batch of the learner's own loader, already on the device, as plain tensors.
- ratio fit / ceiling: what the fastai machinery, the loader and the augmentation cost (1.0 is the ceiling).
- torch Adam: the same loop with `torch.optim.AdamW` (foreach) instead of the recipe's fastai optimizer: how much
  of the ceiling the optimizer step is.
- peak GPU memory (`torch.cuda.max_memory_allocated`) of the fit and of the ceiling loop, on CUDA.

It prints the device (GPU name and compute capability, or the CPU's model name and its avx512f / avx512_bf16 / amx
flags), the precision `--precision` resolves to there, and the load average before and after. On a CPU a smoke
run: `python benchmarks/gpu.py --size 64 --bs 16 --steps 10 --arch mobilenetv2_100`.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from fastai.callback.core import Callback, CancelFitException

from fastmask.recipes.registry import resolve
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime, autocast_ctx, cpu_flags, cuda_capability, resolve_precision
from fastmask.sources.demo import make_demo
from fastmask.sources.open import open_data

DEFAULT_ARCHS = 'mobilenetv2_100,efficientnet_b3'
CPU_FLAGS = ('avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile')


def sync(dev: torch.device) -> None:
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def cpu_name() -> str:
    "The CPU's model name (`lscpu`, else /proc/cpuinfo, else the platform's)."
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10).stdout
        for ln in out.splitlines():
            if ln.lower().startswith('model name'): return ln.split(':', 1)[1].strip()
    except (OSError, subprocess.SubprocessError): pass
    try:
        for ln in Path('/proc/cpuinfo').read_text().splitlines():
            if ln.lower().startswith('model name'): return ln.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown CPU'


def cpu_line() -> str:
    "The CPU's name, cores and whether it has the flags that matter for fp32/bf16 speed."
    flags = cpu_flags()
    have = ', '.join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'{cpu_name()} ({cores} cores; {have})'


def device_line(dev: torch.device) -> str:
    "The device in words: the GPU's name and compute capability, or the CPU's."
    if dev.type == 'cuda':
        cap = cuda_capability(dev)
        return f'{torch.cuda.get_device_name(dev)} (compute capability {cap[0]}.{cap[1]}); host CPU {cpu_line()}'
    return f'CPU {cpu_line()}'


def load_avg() -> str:
    try: return ' '.join(f'{x:.2f}' for x in os.getloadavg())
    except OSError: return '?'


class FitTimer(Callback):
    """Time `steps` training batches of a real `learn.fit` after `warmup` batches, then stop the fit.

    Synchronises only where the clock starts and stops and around each training phase (so validation between
    epochs is left out); the batches in between run as asynchronously as in any fit."""
    order = 200   # after every other callback of the batch

    def __init__(self, warmup: int, steps: int, dev: torch.device):
        self.warmup, self.steps, self.dev = warmup, steps, dev

    def before_fit(self): self.seen, self.images, self.elapsed, self.mark = 0, 0, 0.0, None

    def _counting(self) -> bool: return self.seen >= self.warmup

    def before_train(self):
        if self._counting(): sync(self.dev); self.mark = time.perf_counter()

    def after_batch(self):
        if not self.training: return
        self.seen += 1
        if self.seen == self.warmup: sync(self.dev); self.mark = time.perf_counter(); return
        if self.seen > self.warmup: self.images += len(self.yb[0])
        if self.seen >= self.warmup + self.steps:
            sync(self.dev)
            self.elapsed += time.perf_counter() - self.mark
            self.mark = None
            raise CancelFitException

    def after_train(self):
        if self.mark is not None and self._counting():
            sync(self.dev)
            self.elapsed += time.perf_counter() - self.mark
            self.mark = None

    @property
    def rate(self) -> float: return self.images / self.elapsed if self.elapsed else float('nan')


def fit_rate(learn, warmup: int, steps: int, dev: torch.device) -> tuple[float, int]:
    "Images/s of the Learner's own `fit` over `steps` training batches after `warmup`; (rate, epochs started)."
    timer = FitTimer(warmup, steps, dev)
    epochs = math.ceil((warmup + steps) / max(1, len(learn.dls.train))) + 1
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, learn.recipe.lr, cbs=timer)
    if timer.seen < warmup + steps: raise RuntimeError(f'the fit ran {timer.seen} training batches, fewer than {warmup + steps}')
    return timer.rate, learn.epoch + 1


def step_rate(model, loss_func, opt, xb, yb, runtime: Runtime, dev, warmup: int, steps: int) -> float:
    "Images/s of a plain loop: forward (autocast), loss, backward (GradScaler for fp16), optimizer step, zero_grad."
    scaler = torch.amp.GradScaler(dev.type, enabled=resolve_precision(runtime, dev) == 'fp16')
    model.train()
    t = None
    for i in range(warmup + steps):
        if i == warmup: sync(dev); t = time.perf_counter()
        with autocast_ctx(runtime, dev): out = model(xb)
        loss = loss_func(out.float(), yb)
        scaler.scale(loss).backward()
        if scaler.is_enabled(): scaler.step(opt); scaler.update()
        else: opt.step()
        opt.zero_grad()
    sync(dev)
    return steps * len(xb) / (time.perf_counter() - t)


def peak_gib(dev) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None


def reset_peak(dev) -> None:
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)


def bench_arch(arch: str, a, data, runtime: Runtime) -> dict:
    "One architecture: the recipe's fit, then the ceiling loops on the same model; one result row."
    r = resolve(a.recipe, arch=arch, size=a.size, bs=a.bs, pretrained=False)
    task = a.task or r.tasks[0]
    t0 = time.perf_counter()
    learn = build_learner(r, data, task, runtime=runtime)
    setup = time.perf_counter() - t0
    dev = torch.device(learn.dls.device) if learn.dls.device is not None else torch.device('cpu')
    reset_peak(dev)
    fit, epochs = fit_rate(learn, a.warmup, a.steps, dev)
    peak_fit = peak_gib(dev)
    # the ceiling: the same model, optimizer, loss, batch and precision, without the Learner, loader or augmentation
    model = learn.model
    model.__dict__.pop('forward', None)      # the Autocast callback's forward wrapper: the loop enters autocast itself
    xb, yb = learn.dls.train.one_batch()
    xb, yb = xb.as_subclass(torch.Tensor), yb.as_subclass(torch.Tensor)
    if learn.speed['channels_last']: xb = xb.contiguous(memory_format=torch.channels_last)
    loss_func = learn.loss_func
    reset_peak(dev)
    ceiling = step_rate(model, loss_func, learn.opt, xb, yb, runtime, dev, a.warmup, a.steps)
    peak_ceiling = peak_gib(dev)
    topt = torch.optim.AdamW(model.parameters(), lr=learn.recipe.lr, foreach=True)
    torch_adam = step_rate(model, loss_func, topt, xb, yb, runtime, dev, a.warmup, a.steps)
    row = dict(arch=arch, recipe=r.name, task=task, size=a.size, bs=a.bs, steps=a.steps, warmup=a.warmup,
               device=str(dev), precision=learn.speed['precision'], channels_last=learn.speed['channels_last'],
               compile=learn.speed['compile'], workers=learn.dls.train.fake_l.num_workers, train_batches=len(learn.dls.train),
               epochs_started=epochs, setup_s=round(setup, 1), fit_img_s=round(fit, 1), ceiling_img_s=round(ceiling, 1),
               ratio=round(fit / ceiling, 3), torch_adam_img_s=round(torch_adam, 1),
               peak_fit_gib=None if peak_fit is None else round(peak_fit, 2),
               peak_ceiling_gib=None if peak_ceiling is None else round(peak_ceiling, 2))
    del learn, model, topt, xb, yb
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache()
    return row


def _gib(v) -> str: return '-' if v is None else f'{v:.2f}'


def print_table(rows: list[dict]) -> None:
    head = ('arch', 'precision', 'fit img/s', 'ceiling img/s', 'fit/ceiling', 'torch Adam img/s', 'peak GiB fit', 'peak GiB ceiling')
    cells = [(r['arch'], r['precision'] + (' CL' if r['channels_last'] else '') + (' compiled' if r['compile'] else ''),
              f"{r['fit_img_s']:.1f}", f"{r['ceiling_img_s']:.1f}", f"{r['ratio']:.2f}", f"{r['torch_adam_img_s']:.1f}",
              _gib(r['peak_fit_gib']), _gib(r['peak_ceiling_gib'])) for r in rows]
    w = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    print('  '.join(h.ljust(w[i]) for i, h in enumerate(head)))
    for c in cells: print('  '.join(x.ljust(w[i]) for i, x in enumerate(c)))
    for r in rows: print(f"RATIO {r['arch']} {r['ratio']:.3f}")   # one parseable line per architecture


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default=DEFAULT_ARCHS, help=f'comma-separated timm names (default {DEFAULT_ARCHS})')
    ap.add_argument('--recipe', default='baseline_mobilenetv2', help='the recipe whose Learner is measured (arch, size, bs replaced)')
    ap.add_argument('--task', default=None, help="the recipe's task model (default its first)")
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--steps', type=int, default=30, help='timed training batches')
    ap.add_argument('--warmup', type=int, default=5, help='untimed batches first (cudnn autotuning, compile, allocations)')
    ap.add_argument('--data', default=None, help='a data folder (default: a demo set made in a temporary folder)')
    ap.add_argument('--persons', type=int, default=None, help='demo people (default: enough for one epoch of warm-up + steps)')
    ap.add_argument('--precision', default='auto', choices=('auto', 'fp32', 'bf16', 'fp16'))
    ap.add_argument('--channels-last', dest='channels_last', action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument('--compile', action='store_true', help='torch.compile the model (the fit and the ceiling)')
    ap.add_argument('--workers', type=int, default=None, help='loader workers (default: per machine)')
    ap.add_argument('--json', default=None, help='also write the results to this JSON file')
    return ap.parse_args(argv)


def main(argv=None) -> list[dict]:
    a = parse(argv)
    runtime = Runtime(precision=a.precision, channels_last=a.channels_last, compile=a.compile, num_workers=a.workers)
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')   # fastai's default device, as `fastmask recipe`
    if dev.type == 'cuda': torch.cuda.init()
    archs = [x.strip() for x in a.arch.split(',') if x.strip()]
    load0 = load_avg()
    print(f'device: {device_line(dev)}')
    print(f'torch {torch.__version__}; precision {a.precision} -> {resolve_precision(runtime, dev)}; '
          f'{a.size} px, batch {a.bs}, {a.steps} timed steps after {a.warmup}; load average {load0}', flush=True)
    with tempfile.TemporaryDirectory(prefix='fastmask-gpu-') as tmp:
        data = a.data
        if data is None:
            persons = a.persons or max(16, math.ceil((a.warmup + a.steps + 1) * a.bs / (7 * 0.8)) + 4)
            t = time.perf_counter()
            data = make_demo(Path(tmp) / 'demo', persons=persons, eval_persons=0, seed=0)
            print(f'data: demo, {persons} people, made in {time.perf_counter() - t:.1f} s', flush=True)
        src = open_data(data)
        rows = []
        for arch in archs:
            row = bench_arch(arch, a, src, runtime)
            print(f"  {arch}: {row['train_batches']} batches an epoch, workers {row['workers']}, learner and image cache "
                  f"ready in {row['setup_s']} s", flush=True)
            rows.append(row)
    print()
    print_table(rows)
    print(f'load average: {load0} before, {load_avg()} after')
    if a.json:
        Path(a.json).write_text(json.dumps(dict(device=device_line(dev), torch=torch.__version__, load_before=load0,
                                                load_after=load_avg(), rows=rows), indent=1))
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
