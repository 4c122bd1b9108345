"""BatchNorm folded into convolutions for inference (`fastmask.models.fold`), side by side in one process: ms an image
of an inference forward (no grad, eval mode, channels-last where `auto` turns it on) of the unfolded and the folded
model, rounds interleaved, and the largest difference of their outputs on the same batch.

    python benchmarks/fold.py [--arch tf_efficientnet_lite0] [--sizes 160,224] [--bs 64] [--batches 4] [--rounds 3]

Prints the processor (AVX2 / AVX-512 / AMX) and the load average. What it speeds up: the linear probe's feature
pass, validation-free prediction (`predict`, `evaluate`, the eval people of a run) and the web page.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_profile import processor  # noqa: E402

from fastmask.models.backbones import create_model  # noqa: E402
from fastmask.models.fold import fold_batchnorm  # noqa: E402
from fastmask.models.lite import ARCH  # noqa: E402
from fastmask.runtime import Runtime, tune_allocator, use_channels_last  # noqa: E402


@torch.inference_mode()
def per_image(model, x, n: int) -> float:
    "Seconds an image of `model(x)`, the mean of `n` calls after one warm-up."
    model(x)
    t0 = time.perf_counter()
    for _ in range(n): model(x)
    return (time.perf_counter() - t0) / n / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--arch', default=ARCH)
    ap.add_argument('--sizes', default='160,224')
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--batches', type=int, default=4)
    ap.add_argument('--rounds', type=int, default=3)
    a = ap.parse_args()
    print(f'processor: {processor()}; torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'load average {os.getloadavg()[0]:.2f}', flush=True)
    tune_allocator()   # as fastmask's loaders do: without it every big activation is a fresh page-faulting mmap
    cl = use_channels_last(Runtime(), torch.device('cpu'))
    fmt = torch.channels_last if cl else torch.contiguous_format
    plain = create_model(a.arch, 2, pretrained=True).eval()   # trained weights: random ones run into denormals
    folded = fold_batchnorm(plain)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    n_left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    print(f'{a.arch}: {n_bn} BatchNorm layers, {n_bn - n_left} folded; channels-last {cl}')
    plain, folded = plain.to(memory_format=fmt), folded.to(memory_format=fmt)
    print(f"\n{'size':>5} {'unfolded ms/img':>16} {'folded ms/img':>14} {'speed-up':>9} {'max |diff|':>11}  load")
    for size in map(int, a.sizes.split(',')):
        x = torch.randn(a.bs, 3, size, size).contiguous(memory_format=fmt)
        times = {'plain': [], 'folded': []}
        for _ in range(a.rounds):
            for k, m in (('plain', plain), ('folded', folded)): times[k].append(per_image(m, x, a.batches))
        with torch.inference_mode(): diff = (plain(x) - folded(x)).abs().max().item()
        p, f = min(times['plain']), min(times['folded'])
        print(f'{size:5d} {1000 * p:16.2f} {1000 * f:14.2f} {p / f:8.2f}x {diff:11.2e}  {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
