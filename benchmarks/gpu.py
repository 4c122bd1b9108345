"""GPU throughput (under 5 minutes): EfficientNet-B3 at 224, batch 64; report-style loop vs fastmask vs model-step ceiling.

    python benchmarks/gpu.py [--data DIR] [--arch efficientnet_b3] [--size 224] [--bs 64] [--steps 30] [--compile]

- report: torchvision transforms per image in a torch DataLoader (experiments.md), fp32, contiguous tensors.
- fastmask: decoded-image cache, uint8 batches to the GPU, augmentation + normalisation on the GPU as batch
  transforms, bf16 autocast (fp16 + scaler where bf16 is unsupported), channels-last (+ torch.compile if asked).
- ceiling: the fastmask model step on a synthetic batch already on the GPU (no loader at all).
Each loop runs `--warmup` steps, then times `--steps` training steps (forward, loss, backward, optimizer).
Runs on the CPU too (for a smoke test: --device cpu --arch mobilenetv2_100 --size 64 --steps 2).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import report_loader  # noqa: E402


from fastmask.settings import autocast_ctx, resolve_precision, tune_allocator  # noqa: E402
from fastmask.data.imagecache import build_cache, human_bytes  # noqa: E402
from fastmask.data.block import default_workers, person_split, task_dls  # noqa: E402
from fastmask.sources.demo import demo_dir  # noqa: E402
from fastmask.sources.open import open_data
from fastmask.models.backbones import create_model  # noqa: E402


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def make_model(arch, dev, fast: bool, compile: bool):
    m = create_model(arch, 18, pretrained=False).to(dev).train()
    if fast and dev.type == 'cuda': m = m.to(memory_format=torch.channels_last)
    if compile: m.compile()
    return m, torch.optim.Adam(m.parameters(), 1e-4)


def run_loop(model, opt, batches, dev, precision: str, steps: int, warmup: int, channels_last: bool) -> float:
    "Images/s of `steps` training steps after `warmup` steps; `batches` yields (x, y)."
    scaler = torch.amp.GradScaler(dev.type, enabled=precision == 'fp16')
    n, t = 0, None
    for i, (xb, yb) in enumerate(itertools.islice(batches, warmup + steps)):
        if i == warmup:
            sync(dev)
            t = time.perf_counter()
        xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
        if channels_last: xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast_ctx(dev, precision):
            loss = F.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if i >= warmup: n += len(xb)
    sync(dev)
    return n / (time.perf_counter() - t)


def forever(dl):
    "Cycle a loader's epochs."
    while True:
        for b in dl: yield tuple(t.as_subclass(torch.Tensor) for t in b[:2])   # plain tensors, as the report's


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='competition-layout folder (default: the 300-person demo)')
    ap.add_argument('--arch', default='efficientnet_b3')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--workers', type=int, default=None)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--compile', action='store_true', help='torch.compile the fastmask and ceiling models')
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    tune_allocator()
    t0 = time.perf_counter()
    src = open_data(a.data or demo_dir(persons=300, eval_persons=60))
    df = src.train.reset_index(drop=True)
    splits = person_split(df)
    workers = default_workers() if a.workers is None else a.workers
    prec = resolve_precision(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    print(f'{name}: {a.arch} at {a.size}px, bs {a.bs}, {a.steps} timed steps after {a.warmup}, workers {workers}; '
          f'fastmask precision {prec}, channels-last {dev.type == "cuda"}, compile {a.compile}', flush=True)
    t = time.perf_counter()
    c = build_cache(df['path'], a.size)
    print(f'data ready ({time.perf_counter() - t0:.0f} s); image cache {len(c)} images, {human_bytes(c.nbytes)} '
          f'(built or found in {time.perf_counter() - t:.1f} s)', flush=True)
    tr = df.iloc[splits[0]]
    res = {}
    model, opt = make_model(a.arch, dev, False, False)
    rep = report_loader(tr['path'], tr['label'], a.size, a.bs, workers)
    res['report loop (torchvision, fp32)'] = run_loop(model, opt, forever(rep), dev, 'fp32', a.steps, a.warmup, False)
    print(f'  report done ({time.perf_counter() - t0:.0f} s)', flush=True)
    cl = dev.type == 'cuda'
    model, opt = make_model(a.arch, dev, True, a.compile)
    dls = task_dls(df, 'all', size=a.size, bs=a.bs, num_workers=workers, splits=splits, balanced=False, device=dev)
    tag = f'{prec}{", CL" if cl else ""}'
    res[f'fastmask (cache, batch aug, {tag})'] = run_loop(model, opt, forever(dls.train), dev, prec, a.steps,
                                                             a.warmup, cl)
    print(f'  fastmask done ({time.perf_counter() - t0:.0f} s)', flush=True)
    xb = torch.randn(a.bs, 3, a.size, a.size, device=dev)
    yb = torch.randint(0, 18, (a.bs,), device=dev)
    res[f'ceiling: model step only ({tag})'] = run_loop(model, opt, itertools.repeat((xb, yb)), dev, prec,
                                                             a.steps, a.warmup, cl)
    model, opt = make_model(a.arch, dev, False, False)
    res['ceiling: model step only (fp32)'] = run_loop(model, opt, itertools.repeat((xb, yb)), dev, 'fp32', a.steps,
                                                      a.warmup, False)
    print(f'\nimages/s ({time.perf_counter() - t0:.0f} s in all):')
    for k, v in res.items(): print(f'  {k:<42} {v:9.1f}')
    r, f, c16, c32 = res.values()
    print(f'  fastmask / report: {f / r:.2f}x; fastmask / its ceiling: {f / c16:.2f}; report / fp32 ceiling: {r / c32:.2f}')
    if dev.type == 'cuda': print(f'  peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB')


if __name__ == '__main__':
    main()
