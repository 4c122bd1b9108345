"""Speed levers of a CPU recipe's training step, side by side in one process: ms an image of the real fastai step
(`learn.fit` on a task model) for each variant, and its ratio to a bare fp32 timm train step of the same backbone at
the recipe's size (model, loss, backward, AdamW step: no fastai, no augmentation). Variants are recipe specs
(`cpu_split_lite0[frozen_stages=3]`) and speed settings (`+bf16`, `+fp32`, `+cl`, `+nocl`, `+compile`); the
rounds interleave them so that a machine slowing down shows in every row alike.

    python benchmarks/cpu_levers.py [--data DIR] [--task gender] [--batches 8] [--rounds 2] [VARIANT ...]

Prints the processor (model name; AVX2 / AVX-512 / avx512_bf16 / AMX) and the load average. The step time is what
an epoch costs per image; F1 at equal time is the study's job (`recipes/studies/cpu-speed`).
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
from cpu_profile import StopAfter, processor  # noqa: E402

from fastmask.recipes.spec import resolve_spec  # noqa: E402
from fastmask.runners.train import build_learner  # noqa: E402
from fastmask.runtime import Runtime  # noqa: E402

DEFAULT = ['cpu_split_lite0', 'cpu_split_lite0+fp32+nocl', 'cpu_split_lite0+bf16', 'cpu_split_lite0[frozen_stages=2]',
           'cpu_split_lite0[frozen_stages=3]', 'cpu_split_lite0[frozen_stages=4]', 'cpu_split_lite0[size=128]',
           'cpu_split_lite0[bs=64]', 'cpu_split_lite0[frozen_stages=3]+bf16']
SPEED = {'fp32': dict(precision='fp32'), 'bf16': dict(precision='bf16'), 'cl': dict(channels_last=True),
         'nocl': dict(channels_last=False), 'compile': dict(compile=True)}


def parse(variant: str) -> tuple[str, dict]:
    "A variant as (recipe spec, runtime settings)."
    spec, *flags = variant.split('+')
    rt = dict(precision='auto', channels_last=None, num_workers=0)
    for f in flags:
        if f not in SPEED: raise SystemExit(f"unknown speed flag '+{f}' (one of {', '.join('+' + k for k in SPEED)})")
        rt.update(SPEED[f])
    return spec, rt


def bare_step(arch: str, size: int, bs: int, n: int) -> float:
    "Seconds an image of a bare fp32 timm train step (random batch; model, loss, backward, AdamW)."
    import timm
    m = timm.create_model(arch, num_classes=2).train()
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    x, y = torch.randn(bs, 3, size, size), torch.randint(0, 2, (bs,))
    def step():
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    step(); step()
    t0 = time.perf_counter()
    for _ in range(n): step()
    return (time.perf_counter() - t0) / n / bs


def fit_step(variant: str, data, task: str, n: int) -> tuple[float, str]:
    "Seconds an image of the fastai training step of a variant, and what its runtime resolved to."
    spec, rt = parse(variant)
    r = resolve_spec(spec, pretrained=False, head_init='', epochs=1, freeze_epochs=0)
    learn = build_learner(r, data, task, runtime=Runtime(**rt))
    stop = StopAfter(n)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-4, cbs=[stop])
    sp = learn.speed
    return stop.dt / r.bs, f"{r.size}px bs{r.bs} {sp['precision']}{' cl' if sp['channels_last'] else ''}{' compiled' if sp.get('compile') else ''}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('variants', nargs='*', default=DEFAULT)
    ap.add_argument('--data', default=None, help='a layout or labels CSV (default: a 60-person demo set in a temp folder)')
    ap.add_argument('--task', default='gender')
    ap.add_argument('--batches', type=int, default=8)
    ap.add_argument('--rounds', type=int, default=2)
    a = ap.parse_args()
    data = a.data
    if data is None:
        from fastmask.sources.demo import make_demo
        data = make_demo(Path(tempfile.mkdtemp(prefix='fastmask-levers-')) / 'demo', persons=60, eval_persons=0, seed=0)
    print(f'processor: {processor()}; torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'load average {os.getloadavg()[0]:.2f}', flush=True)
    base = resolve_spec(parse(a.variants[0])[0])
    times = {v: [] for v in ['bare fp32 step'] + a.variants}
    notes = {'bare fp32 step': f'{base.arch} {base.size}px bs{base.bs} fp32, random batch'}
    for _ in range(a.rounds):
        times['bare fp32 step'].append(bare_step(base.arch, base.size, base.bs, a.batches))
        for v in a.variants:
            dt, notes[v] = fit_step(v, data, a.task, a.batches)
            times[v].append(dt)
    bare = min(times['bare fp32 step'])
    print(f"\n{'variant':<48} {'ms/image':>9} {'x bare':>7}  runtime")
    for v, ts in times.items():
        print(f'{v:<48} {1000 * min(ts):9.2f} {min(ts) / bare:7.2f}  {notes[v]}')
    print(f'\nbest of {a.rounds} rounds of {a.batches} batches each; load average {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
