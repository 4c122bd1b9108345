"""Training-loader throughput: the report's torchvision pipeline against fastmask's cached loader, side by side.

    python benchmarks/loader.py [--data DIR] [--size 224] [--bs 64] [--workers N] [--repeats 2]

Both loaders read the same training images (the training split of the demo data, 384x512 JPEGs) with the same
batch size and worker count; each loop pulls every batch of one epoch, augmented and normalised, on the CPU.
"""
from __future__ import annotations

import argparse
import resource
import time

import torch
from PIL import Image

from fastmask.data.augment import REPORT_MEAN, REPORT_STD
from fastmask.data.imagecache import build_cache, human_bytes
from fastmask.data.block import default_workers, person_split, task_dls
from fastmask.sources.demo import demo_dir
from fastmask.sources.open import open_data


class ReportDataset(torch.utils.data.Dataset):
    "The report's dataset: open the photo with PIL, apply the torchvision transforms, return (image, label)."
    def __init__(self, paths, labels, tfm): self.paths, self.labels, self.tfm = list(paths), list(labels), tfm
    def __len__(self): return len(self.paths)
    def __getitem__(self, i): return self.tfm(Image.open(self.paths[i]).convert('RGB')), self.labels[i]


def report_transforms(size: int = 224):
    "experiments.md, item 5: the report's training transforms, exactly."
    from torchvision import transforms as T
    return T.Compose([T.CenterCrop(350), T.Resize((size, size)), T.RandomHorizontalFlip(),
                      T.RandomChoice([T.RandomAffine(degrees=3), T.ColorJitter(0.1, 0.1, 0.1, 0)]),
                      T.ToTensor(), T.Normalize(mean=REPORT_MEAN, std=REPORT_STD)])


def report_loader(paths, labels, size: int, bs: int, workers: int):
    "The report-style torch DataLoader."
    return torch.utils.data.DataLoader(ReportDataset(paths, labels, report_transforms(size)), batch_size=bs,
                                       shuffle=True, num_workers=workers, drop_last=False)


def cpu_seconds() -> float:
    "CPU time of this process and its finished children (the loader workers end with each epoch)."
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def time_epoch(dl) -> tuple[float, int, float]:
    "(wall seconds, images, CPU seconds of all processes) to pull every batch of one epoch."
    t, c, n = time.perf_counter(), cpu_seconds(), 0
    for xb, _ in dl: n += len(xb)
    return time.perf_counter() - t, n, cpu_seconds() - c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=None, help='competition-layout folder (default: the 300-person demo)')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--workers', type=int, default=None, help='loader workers for both (default: one per core)')
    ap.add_argument('--repeats', type=int, default=2, help='epochs timed per loader, alternating; best is kept')
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    src = open_data(a.data or demo_dir(persons=300, eval_persons=60))
    df = src.train.reset_index(drop=True)
    splits = person_split(df)
    workers = default_workers() if a.workers is None else a.workers
    tr = df.iloc[splits[0]]
    print(f'data: {src.root} ({len(df)} training photos, {len(tr)} in the training split), size {a.size}, '
          f'bs {a.bs}, workers {workers}, torch threads 1')
    t = time.perf_counter()
    c = build_cache(df['path'], a.size)
    print(f'fastmask image cache: {len(c)} images, {human_bytes(c.nbytes)}, ready in {time.perf_counter() - t:.1f} s '
          f'(one-off decode; 0 when already built)')
    rep = report_loader(tr['path'], tr['label'], a.size, a.bs, workers)
    fm = task_dls(df, 'all', size=a.size, bs=a.bs, num_workers=workers, splits=splits, balanced=False).train
    names = ('report (torchvision, PIL per image)', 'fastmask (cache + batch augment)')
    best, cpu = dict.fromkeys(names, 0.0), dict.fromkeys(names, float('inf'))
    for r in range(a.repeats):
        for name, dl in zip(names, (rep, fm)):
            s, n, c = time_epoch(dl)
            best[name], cpu[name] = max(best[name], n / s), min(cpu[name], c / n)
            print(f'  repeat {r + 1}: {name:<38} {n} images in {s:6.2f} s = {n / s:7.1f} images/s, '
                  f'{1000 * c / n:5.2f} CPU-ms/image', flush=True)
    print(f'\nbest of {a.repeats}:')
    for name in names: print(f'  {name:<38} {best[name]:8.1f} images/s  {1000 * cpu[name]:6.2f} CPU-ms/image')
    rv, fv = best.values()
    rc, fc = cpu.values()
    print(f'  ratio fastmask / report: {fv / rv:.1f}x images/s (wall clock, target >= 4x); '
          f'{rc / fc:.1f}x less CPU per image (what a busy machine turns into throughput)')

if __name__ == '__main__':
    main()
