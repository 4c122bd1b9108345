"""DataBlocks per task: per-person splitter, balanced mask sampler, age-curve labeller, report transforms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from fastai.vision.all import (CategoryBlock, ColReader, DataBlock, DataLoaders, Datasets, IndexSplitter, TensorImage,
                               TfmdDL, ToTensor, Transform, TransformBlock, default_device, delegates)
from fasttransform import Pipeline
from sklearn.model_selection import train_test_split

from .augment import REPORT_CROP, FaceImage, batch_tfms, item_tfms
from .errors import LayoutError
from .labels import DEFAULT_AGE_CUT, TASKS, age_group, encode, task_names

__all__ = ['TaskLabel', 'person_keys', 'person_split', 'WorkerBatchDL', 'BalancedMaskDL', 'mask_groups', 'task_datablock',
           'CachedImage', 'CachedImageBlock', 'cached_datablock', 'task_dls', 'infer_dl', 'default_workers']


def default_workers() -> int:
    "Loader worker processes: one per core, at most 8."
    import os
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)


class TaskLabel:
    "Label of a DataFrame row for one task; the age group uses the recipe's age curve."
    def __init__(self, task: str, age_cut: int = DEFAULT_AGE_CUT):
        if task not in TASKS: raise ValueError(f"unknown task '{task}' (one of {', '.join(TASKS)})")
        self.task, self.age_cut = task, age_cut

    def __call__(self, row) -> int:
        if self.task == 'mask': return int(row['mask'])
        if self.task == 'gender': return int(row['gender'])
        a = age_group(int(row['age']), self.age_cut) if 'age' in row and pd.notna(row['age']) else int(row['age_group'])
        return a if self.task == 'age' else encode(int(row['mask']), int(row['gender']), a)

    def labels(self, df: pd.DataFrame) -> np.ndarray:
        "Labels of every row, vectorised."
        a = age_group(df['age'].to_numpy(), self.age_cut) if self.task in ('age', 'all') else None
        if self.task == 'age': return np.asarray(a)
        if self.task == 'all': return encode(df['mask'].to_numpy(), df['gender'].to_numpy(), a)
        return df[self.task].to_numpy().astype(int)


def person_keys(df: pd.DataFrame) -> pd.Series:
    "The group id of each row: `person` (or `group`) column, else the row itself."
    for c in ('person', 'group', 'photo'):
        if c in df.columns: return df[c].astype(str)
    return pd.Series(np.arange(len(df)).astype(str), index=df.index)


def _strata(df: pd.DataFrame, keys: pd.Series) -> pd.Series:
    "Per-person stratum: gender x age group (at 60) where the data has them."
    parts = []
    if 'gender' in df.columns and df['gender'].notna().all(): parts.append(df['gender'].astype(int) * 3)
    if 'age' in df.columns and df['age'].notna().all(): parts.append(pd.Series(age_group(df['age'].to_numpy()), index=df.index))
    s = sum(parts) if parts else pd.Series(0, index=df.index)
    return s.groupby(keys).first()


def person_split(df: pd.DataFrame, valid_pct: float = 0.15, seed: int = 156) -> tuple[np.ndarray, np.ndarray]:
    "Row indices (train, valid): people split `1-valid_pct` / `valid_pct`, stratified by gender x age group."
    if not 0 < valid_pct < 1: raise ValueError(f'valid_pct {valid_pct} must lie strictly between 0 and 1')
    keys = person_keys(df).reset_index(drop=True)
    strata = _strata(df.reset_index(drop=True), keys)
    people = strata.index.to_numpy()
    if len(people) < 2: raise LayoutError(f'cannot split {len(people)} person(s) into training and validation')
    n_valid = min(max(1, int(round(valid_pct * len(people)))), len(people) - 1)
    counts = strata.value_counts()
    strat = strata.to_numpy() if counts.min() >= 2 and n_valid >= len(counts) and len(people) - n_valid >= len(counts) else None
    _, valid_people = train_test_split(people, test_size=n_valid, random_state=seed, stratify=strat)
    is_valid = keys.isin(set(valid_people)).to_numpy()
    return np.flatnonzero(~is_valid), np.flatnonzero(is_valid)


def mask_groups(df: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    "Per person (positions in `df`): the correctly-worn photos to draw one from, and the photos always used."
    pos = pd.Series(np.arange(len(df)), index=df.index)
    out = []
    for _, g in pos.groupby(person_keys(df).to_numpy(), sort=True):
        wear = (df.loc[g.index, 'mask'] == 0).to_numpy()
        out.append((g.to_numpy()[wear], g.to_numpy()[~wear]))
    return out


@delegates()
class WorkerBatchDL(TfmdDL):
    "A TfmdDL that, on the CPU, runs the batch transforms (augment, normalise) in its worker processes, in parallel."
    def __init__(self, dataset=None, worker_tfms: bool | None = None, **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.worker_tfms = worker_tfms

    def _in_workers(self) -> bool:
        on_cpu = self.device is None or torch.device(self.device).type == 'cpu'
        return (on_cpu and self.fake_l.num_workers > 0) if self.worker_tfms is None else self.worker_tfms

    def create_batch(self, b):
        b = super().create_batch(b)
        pipe = getattr(self, '_worker_pipe', None)
        return pipe(b) if pipe is not None else b

    def __iter__(self):
        if not self._in_workers():
            yield from super().__iter__()
            return
        self._worker_pipe, after = self.after_batch, self.after_batch
        self.after_batch = Pipeline([], split_idx=after.split_idx)   # the workers did it
        try: yield from super().__iter__()
        finally: self.after_batch, self._worker_pipe = after, None


@delegates()
class BalancedMaskDL(WorkerBatchDL):
    "Training loader that draws, each epoch, one mask photo per person plus their incorrect and normal photos."
    def __init__(self, dataset=None, groups=None, draw_seed: int = 0, **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.groups, self.draw_seed, self.draws = groups, draw_seed, 0
        if groups is not None: self.n = sum(int(len(w) > 0) + len(o) for w, o in groups)

    def draw(self) -> list[int]:
        "One epoch's indices: one random correctly-worn photo per person plus all other photos, shuffled."
        rng = np.random.default_rng([self.draw_seed, self.draws])
        self.draws += 1
        idxs = [int(rng.choice(w)) for w, _ in self.groups if len(w)] + [int(i) for _, o in self.groups for i in o]
        rng.shuffle(idxs)
        return idxs

    def get_idxs(self):
        if self.groups is None or not self.shuffle: return super().get_idxs()
        return self.draw()


def task_datablock(task: str, splits, size: int, age_cut: int = DEFAULT_AGE_CUT, crop: float = REPORT_CROP,
                   augment: bool = True) -> DataBlock:
    "The DataBlock of one task on a DataFrame with `path` and label columns."
    return DataBlock(blocks=(TransformBlock(type_tfms=FaceImage.create), CategoryBlock(vocab=list(range(len(task_names(task)))))),
                     get_x=ColReader('path'), get_y=TaskLabel(task, age_cut),
                     splitter=IndexSplitter(splits[1]), item_tfms=item_tfms(size, crop), batch_tfms=batch_tfms(augment))


class CachedImage(Transform):
    "Item index -> uint8 TensorImage (3, size, size) read from a memory-mapped image cache; no JPEG decoding."
    def __init__(self, array: np.ndarray, rows): self.array, self.rows = array, np.asarray(rows)
    def encodes(self, i: int): return TensorImage(torch.from_numpy(np.array(self.array[self.rows[i]])).permute(2, 0, 1))


def CachedImageBlock(array: np.ndarray, rows) -> TransformBlock:
    "An ImageBlock over cached rows: items are indices, images come decoded, cropped and resized from the cache."
    return TransformBlock(type_tfms=CachedImage(array, rows))


def row_position(row) -> int:
    "Position of a DataFrame row (its index after `reset_index`): the item's cache row lookup key."
    return int(row.name)


class _Lookup:
    "DataFrame row -> precomputed label at its position (picklable)."
    def __init__(self, values): self.values = np.asarray(values)
    def __call__(self, row) -> int: return int(self.values[row.name])


def _task_labels(df: pd.DataFrame, task: str, age_cut: int) -> np.ndarray:
    tl = TaskLabel(task, age_cut)
    if task in ('age', 'all') and ('age' not in df.columns or df['age'].isna().any()):
        return np.array([tl(row) for _, row in df.iterrows()], dtype=np.int64)
    return np.asarray(tl.labels(df), dtype=np.int64)


def cached_datablock(df: pd.DataFrame, task: str, splits, size: int, age_cut: int = DEFAULT_AGE_CUT,
                     crop: float = REPORT_CROP, augment: bool = True, skip_bad: bool = False) -> DataBlock:
    "The DataBlock of one task over the rows of `df` (reset index), reading images from the decoded-image cache."
    from .cache import cached_images
    array, rows = cached_images(df['path'], size, crop, skip_bad=skip_bad)
    return DataBlock(blocks=(CachedImageBlock(array, rows), CategoryBlock(vocab=list(range(len(task_names(task)))))),
                     get_x=row_position, get_y=_Lookup(_task_labels(df, task, age_cut)), splitter=IndexSplitter(splits[1]),
                     batch_tfms=batch_tfms(augment))


def _use_cache(cache: bool | None) -> bool:
    "Whether to read images from the cache (default: the speed settings); tunes the CPU allocator for batch tensors."
    from .accel import SETTINGS, tune_allocator
    tune_allocator()
    return SETTINGS.cache if cache is None else cache


def task_dls(df: pd.DataFrame, task: str, size: int = 224, bs: int = 64, age_cut: int = DEFAULT_AGE_CUT,
             valid_pct: float = 0.15, split_seed: int = 156, balanced: bool | None = None, seed: int = 0,
             crop: float = REPORT_CROP, augment: bool = True, num_workers: int | None = None, splits=None,
             device=None, cache: bool | None = None) -> DataLoaders:
    "DataLoaders of one task; the mask task draws balanced 1:1:1 batches by default; images from the cache by default."
    df = df.reset_index(drop=True)
    splits = person_split(df, valid_pct, split_seed) if splits is None else splits
    balanced = (task == 'mask') if balanced is None else balanced
    kw = {}
    if balanced:
        if 'mask' not in df.columns: raise LayoutError("the balanced mask sampler needs a 'mask' column")
        kw = dict(dl_type=BalancedMaskDL, dl_kwargs=[{'groups': mask_groups(df.iloc[splits[0]]), 'draw_seed': seed}, {}])
    else: kw = dict(dl_type=WorkerBatchDL)
    nw = default_workers() if num_workers is None else num_workers
    if _use_cache(cache) and 'path' in df.columns:
        dblock = cached_datablock(df, task, splits, size, age_cut, crop, augment)
        return dblock.dataloaders(df, bs=bs, num_workers=nw, device=device, **kw)
    dblock = task_datablock(task, splits, size, age_cut, crop, augment)
    return dblock.dataloaders(df, bs=bs, num_workers=nw, device=device, **kw)


def infer_dl(paths, size: int, crop: float = REPORT_CROP, bs: int = 64, num_workers: int | None = None,
             device=None, cache: bool | None = None) -> TfmdDL:
    "A loader over image paths with the validation transforms (crop, resize, normalise), in order; cached by default."
    paths = [str(p) for p in paths]
    nw = default_workers() if num_workers is None else num_workers
    if _use_cache(cache):
        from .cache import cached_images
        array, rows = cached_images(paths, size, crop)
        dsets = Datasets(list(range(len(paths))), tfms=[[CachedImage(array, rows)]], split_idx=1)
        return WorkerBatchDL(dsets, bs=bs, shuffle=False, drop_last=False, num_workers=nw,
                      after_batch=batch_tfms(False), device=device or default_device())
    dsets = Datasets(paths, tfms=[[FaceImage.create]], split_idx=1)
    return WorkerBatchDL(dsets, bs=bs, shuffle=False, drop_last=False, num_workers=nw,
                  after_item=[*item_tfms(size, crop), ToTensor()],
                  after_batch=batch_tfms(False), device=device or default_device())
