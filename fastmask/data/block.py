"""DataBlocks per task: per-person splitter, balanced mask sampler, age-curve labeller, report transforms."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from fastai.vision.all import (CategoryBlock, ColReader, DataBlock, DataLoaders, Datasets, IndexSplitter, TensorImage,
                               TfmdDL, ToTensor, Transform, TransformBlock, default_device, delegates)
from fasttransform import Pipeline
from sklearn.model_selection import train_test_split

from fastmask.data.augment import REPORT_CROP, REPORT_MEAN, REPORT_STD, FaceImage, batch_tfms, item_tfms
from fastmask.errors import LayoutError
from fastmask.labels import DEFAULT_AGE_CUT, TASKS, age_group, encode, task_names
from fastmask.runtime import tune_allocator
from fastmask.data.imagecache import cached_images

__all__ = ['TaskLabel', 'person_keys', 'person_split', 'WorkerBatchDL', 'BalancedMaskDL', 'mask_groups', 'task_datablock',
           'CachedImage', 'CachedImageBlock', 'image_block', 'task_labels', 'task_dls', 'infer_dl', 'default_workers',
           'person_strata', 'row_position']


def default_workers() -> int:
    """Loader worker processes: one per core, at most 8; none on a CPU-only machine of 2 cores or fewer, where workers
    take the cores the model needs (measured: an epoch 1.2x faster in the main process with the image cache)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return 0 if cores <= 2 and not torch.cuda.is_available() else min(8, cores)


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


def person_strata(df: pd.DataFrame, keys: pd.Series) -> pd.Series:
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
    strata = person_strata(df.reset_index(drop=True), keys)
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
    def __init__(self, dataset=None, groups=None, draw_seed: int = 0, per_person: int = 0, **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.groups, self.draw_seed, self.draws, self.per_person = groups, draw_seed, 0, per_person
        if groups is not None:
            self.n = sum(min(k, per_person) if per_person else k for k in (int(len(w) > 0) + len(o) for w, o in groups))

    def draw(self) -> list[int]:
        """One epoch's indices: one random correctly-worn photo per person plus all other photos (or `per_person` of
        those, drawn at random), shuffled."""
        rng = np.random.default_rng([self.draw_seed, self.draws])
        self.draws += 1
        idxs = []
        for w, o in self.groups:
            own = ([int(rng.choice(w))] if len(w) else []) + [int(i) for i in o]
            if self.per_person and len(own) > self.per_person: own = [int(i) for i in rng.choice(own, self.per_person, replace=False)]
            idxs += own
        rng.shuffle(idxs)
        return idxs

    def get_idxs(self):
        if self.groups is None or not self.shuffle: return super().get_idxs()
        return self.draw()


class CachedImage(Transform):
    "Item index -> uint8 TensorImage (3, size, size) read from a memory-mapped image cache; no JPEG decoding."
    def __init__(self, array: np.ndarray, rows): self.array, self.rows = array, np.asarray(rows)
    def encodes(self, i: int): return TensorImage(torch.from_numpy(np.array(self.array[self.rows[i]])).permute(2, 0, 1))


def CachedImageBlock(array: np.ndarray, rows) -> TransformBlock:
    "An ImageBlock over DataFrame rows whose images come decoded, cropped and resized from the cache."
    return TransformBlock(type_tfms=[row_position, CachedImage(array, rows)])


def row_position(row) -> int:
    "Position of a DataFrame row (its index after `reset_index`): the item's cache row lookup key."
    return int(row.name)


class _Lookup:
    "DataFrame row -> precomputed label at its position (picklable)."
    def __init__(self, values): self.values = np.asarray(values)
    def __call__(self, row) -> int: return int(self.values[row.name])


def task_labels(df: pd.DataFrame, task: str, age_cut: int = DEFAULT_AGE_CUT) -> np.ndarray:
    "Integer labels of every row of `df` for one task (the age group from the recipe's age curve)."
    tl = TaskLabel(task, age_cut)
    if task in ('age', 'all') and ('age' not in df.columns or df['age'].isna().any()):
        return np.array([tl(row) for _, row in df.iterrows()], dtype=np.int64)
    return np.asarray(tl.labels(df), dtype=np.int64)


def image_block(df: pd.DataFrame, size: int, crop: float = REPORT_CROP, cache: bool = True) -> tuple[TransformBlock, list]:
    "The image block and its item transforms: decoded, cropped, resized uint8 images from the cache, or the files."
    if cache:
        array, rows = cached_images(df['path'], size, crop)
        return CachedImageBlock(array, rows), []
    return TransformBlock(type_tfms=[ColReader('path'), FaceImage.create]), item_tfms(size, crop)  # fastai's ImageBlock


def task_datablock(df: pd.DataFrame, task: str, splits, size: int, age_cut: int = DEFAULT_AGE_CUT,
                   crop: float = REPORT_CROP, augment: bool = True, cache: bool = True, stats=None, **aug) -> DataBlock:
    "The DataBlock of one task over the rows of `df` (reset index); only the image block varies (cache or files)."
    block, itfms = image_block(df, size, crop, cache)
    return DataBlock(blocks=(block, CategoryBlock(vocab=list(range(len(task_names(task)))))),
                     get_y=_Lookup(task_labels(df, task, age_cut)),
                     splitter=IndexSplitter(splits[1]), item_tfms=itfms,
                     batch_tfms=batch_tfms(augment, *(stats or (REPORT_MEAN, REPORT_STD)), size=size, **aug))


def _use_cache(cache: bool | None) -> bool:
    "Whether to read images from the cache (default: yes); tunes the CPU allocator for batch tensors."
    tune_allocator()
    return True if cache is None else cache


def task_dls(df: pd.DataFrame, task: str, size: int = 224, bs: int = 64, age_cut: int = DEFAULT_AGE_CUT,
             valid_pct: float = 0.15, split_seed: int = 156, balanced: bool | None = None, seed: int = 0,
             crop: float = REPORT_CROP, augment: bool = True, num_workers: int | None = None, splits=None,
             device=None, cache: bool | None = None, stats=None, rrc_scale: float = 1.0, cutout: float = 0.0,
             per_person: int = 0, camera: float = 0.0) -> DataLoaders:
    "DataLoaders of one task; the mask task draws balanced 1:1:1 batches by default; images from the cache by default.\n\n    `stats`: (mean, std) of the normalisation (default the report's)."
    df = df.reset_index(drop=True)
    splits = person_split(df, valid_pct, split_seed) if splits is None else splits
    balanced = (task == 'mask') if balanced is None else balanced
    kw = {}
    if balanced:
        if 'mask' not in df.columns: raise LayoutError("the balanced mask sampler needs a 'mask' column")
        kw = dict(dl_type=BalancedMaskDL, dl_kwargs=[{'groups': mask_groups(df.iloc[splits[0]]), 'draw_seed': seed,
                                                          'per_person': per_person}, {}])
    else: kw = dict(dl_type=WorkerBatchDL)
    nw = default_workers() if num_workers is None else num_workers
    dblock = task_datablock(df, task, splits, size, age_cut, crop, augment, _use_cache(cache), stats,
                            rrc_scale=rrc_scale, cutout=cutout, camera=camera)
    return dblock.dataloaders(df, bs=bs, num_workers=nw, device=device, **kw)


def infer_dl(paths, size: int, crop: float = REPORT_CROP, bs: int = 64, num_workers: int | None = None,
             device=None, cache: bool | None = None, stats=None) -> TfmdDL:
    "A loader over image paths with the validation transforms (crop, resize, normalise by `stats`), in order."
    df = pd.DataFrame({'path': [str(p) for p in paths]})
    block, itfms = image_block(df, size, crop, _use_cache(cache))
    dsets = Datasets(df, tfms=[block.type_tfms], split_idx=1)
    nw = default_workers() if num_workers is None else num_workers
    return WorkerBatchDL(dsets, bs=bs, shuffle=False, drop_last=False, num_workers=nw,
                         after_item=[*itfms, ToTensor()], after_batch=batch_tfms(False, *(stats or ())),
                         device=device or default_device())
