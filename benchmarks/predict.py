"""Prediction throughput: `fastmask predict` (library call) on the eval images with and without the image cache.

    python benchmarks/predict.py [--data DIR] [--arch mobilenetv2_100] [--size 224] [--bs 64] [--workers N]

A run folder with an untrained task model (`model_all.pth`, speed does not depend on the weights) is written to a
temporary folder; `predict_paths` (what `fastmask predict` calls) is timed: JPEG decoding every time (--no-cache),
the first cached call (builds the cache), and a later cached call (cache already on disk, as for a second ensemble
member or a rerun). The loader alone is timed too, to show how much of the time is decoding.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fastmask.runtime import Runtime
from fastmask.data.imagecache import clear_cache, human_bytes, cache_size
from fastmask.data.block import default_workers, infer_dl
from fastmask.sources.demo import demo_dir
from fastmask.io import save_torch
from fastmask.sources.open import open_data
from fastmask.models.backbones import create_model
from fastmask.inference.predict import predict_paths


def fake_run(folder: Path, arch: str, size: int, crop: float = 350 / 384) -> Path:
    "A run folder holding one untrained 18-class model."
    m = create_model(arch, 18, pretrained=False)
    save_torch(folder / 'model_all.pth', dict(arch=arch, task='all', n_out=18, size=size, crop=crop, age_cut=60,
                                              state_dict=m.state_dict()))
    return folder


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='competition-layout folder (default: the 300-person demo)')
    ap.add_argument('--arch', default='mobilenetv2_100')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--workers', type=int, default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    src = open_data(a.data or demo_dir(persons=300, eval_persons=60))
    if src.eval is None: raise SystemExit(f'{src.root}: no eval images')
    paths, n = list(src.eval['path']), len(src.eval)
    workers = default_workers() if a.workers is None else a.workers
    with tempfile.TemporaryDirectory() as tmp:
        run = fake_run(Path(tmp) / 'run', a.arch, a.size)
        cache = Path(tmp) / 'cache'
        import os
        os.environ['FASTMASK_CACHE'] = str(cache)                     # a private, empty cache for a cold start
        print(f'{n} eval images of {src.root}, {a.arch} at {a.size}px, bs {a.bs}, workers {workers}, torch threads 1')
        rt, no_cache = Runtime(num_workers=workers), Runtime(num_workers=workers, cache=False)
        pred = lambda rt=rt: predict_paths(run, paths, bs=a.bs, runtime=rt)
        load = lambda cache=True: [b for b in infer_dl(paths, a.size, bs=a.bs, num_workers=workers, cache=cache)]
        predict_paths(run, paths[:a.bs], bs=a.bs, runtime=no_cache)   # warm-up: model load, first allocations
        t_nc, l_nc = timed(lambda: pred(no_cache)), timed(lambda: load(False))
        t_cold = timed(pred)
        size = cache_size(cache / 'images')
        t_warm, l_warm = timed(pred), timed(load)
        rows = [('predict, no cache (JPEG decode)', t_nc), ('predict, cache cold (builds it)', t_cold),
                ('predict, cache warm', t_warm), ('loader only, no cache', l_nc), ('loader only, cache warm', l_warm)]
        for name, t in rows: print(f'  {name:<34} {t:7.2f} s = {n / t:8.1f} images/s')
        print(f'  cache size: {human_bytes(size)}')
        print(f'  ratio warm cache / no cache: predict {t_nc / t_warm:.2f}x, loader {l_nc / l_warm:.1f}x')
        clear_cache(cache / 'images')


if __name__ == '__main__':
    main()
