"""Why train-mode BatchNorm hurts fine-tuning Lite0 on faces: batch vs running statistics, layer by layer.

    python benchmarks/bn_shift.py [--faces 512] [--size 160] [--bs 32]

On real face crops (UTKFace, ../shared/data) with the offline Lite0 ImageNet weights, prints
- the conversion check: BatchNorm eps (TensorFlow's 1e-3) and momentum of the converted model;
- per BatchNorm layer, the ratio of a face batch's standard deviation to the running (ImageNet) one, and the
  share of channels whose running variance is 0;
- the cosine similarity of pooled features computed in train mode (batch statistics) and in eval mode (running
  statistics), and how far one batch's features move when only the batch changes (batch-statistics noise).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fastmask.data.block import infer_dl
from fastmask.models.backbones import create_body, pretrained_stats
from fastmask.models.lite import ARCH

SHARED = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--faces', type=int, default=512)
    ap.add_argument('--size', type=int, default=160)
    ap.add_argument('--bs', type=int, default=32)
    a = ap.parse_args()
    paths = sorted((SHARED / 'utkface' / 'images').glob('*.jpg'))
    paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[:a.faces]]
    body = create_body(ARCH, pretrained=True)
    bns = [(n, m) for n, m in body.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    print(f'{ARCH}: {len(bns)} BatchNorm layers; eps {sorted({m.eps for _, m in bns})}, momentum {sorted({m.momentum for _, m in bns})}')
    dl = infer_dl(paths, a.size, 0.0, bs=a.bs, num_workers=0, device='cpu', stats=pretrained_stats(ARCH))
    ratios, zero = {n: [] for n, _ in bns}, {n: float((m.running_var == 0).float().mean()) for n, m in bns}
    live = {n: [] for n, _ in bns}   # channels dead on ImageNet (running variance 0) that vary on faces
    hooks = []
    for n, m in bns:
        def hook(mod, inp, out, n=n):
            x = inp[0].float()
            bstd = x.transpose(0, 1).flatten(1).std(1)
            rstd = (mod.running_var + mod.eps).sqrt()
            ok = mod.running_var > 0
            ratios[n].append(float((bstd[ok] / rstd[ok]).median()))
            live[n].append(float((bstd[~ok] > 1e-3).float().mean()) if (~ok).any() else 0.0)
        hooks.append(m.register_forward_hook(hook))
    feats_eval, feats_train = [], []
    with torch.no_grad():
        body.eval()
        for (xb,) in dl: feats_eval.append(body(xb))
        for h in hooks: h.remove()
        state = {k: v.clone() for k, v in body.state_dict().items()}
        body.train()
        for (xb,) in dl: feats_train.append(body(xb))
        body.load_state_dict(state)
    fe, ft = torch.cat(feats_eval), torch.cat(feats_train)
    cos = torch.nn.functional.cosine_similarity(torch.as_tensor(fe).float(), torch.as_tensor(ft).float()).numpy()
    r = np.array([np.mean(v) for v in ratios.values()])
    print(f'batch std / running std per layer: median {np.median(r):.2f}, 10%-90% {np.quantile(r, .1):.2f}-{np.quantile(r, .9):.2f}, '
          f'first layer {r[0]:.2f}, last layer {r[-1]:.2f}')
    print(f'layers with running variance exactly 0 in some channels: {sum(v > 0 for v in zero.values())} '
          f'(max share {max(zero.values()):.1%}); of those channels, {np.mean([np.mean(v) for n, v in live.items() if zero[n] > 0]):.1%} '
          f'vary on face batches, where eval mode divides them by sqrt(eps) = {bns[0][1].eps ** .5:.3f}')
    print(f'pooled features, train-mode vs eval-mode cosine similarity: mean {cos.mean():.3f}, '
          f'10%-90% {np.quantile(cos, .1):.3f}-{np.quantile(cos, .9):.3f}')
    with torch.no_grad():   # the same 8 images in two different batches: how much batch statistics alone move them
        it = iter(dl)
        xb, other = next(it)[0], next(it)[0]
        body.train()
        a1 = body(xb)[:8]
        a2 = body(torch.cat([xb[:8], other[8:]]))[:8]
        body.load_state_dict(state)
    print(f'same images, other batch mates (train mode): cosine similarity {float(torch.nn.functional.cosine_similarity(a1, a2).mean()):.3f}')


if __name__ == '__main__':
    main()
