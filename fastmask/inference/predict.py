"""Predict from a run folder: task models combined into 18 classes, soft voting, submissions.

What a run kind adds to prediction (k-fold folders, face crops, an external age head) comes from its prediction
hooks in `fastmask.runners.registry`, looked up by the kind in the run folder's `config.json`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.torch_core import default_device

from fastmask.data.block import infer_dl
from fastmask.errors import FastmaskError
from fastmask.io import write_csv
from fastmask.labels import N_CLASSES
from fastmask.models.backbones import create_model
from fastmask.progress import progress
from fastmask.rundir import RunDir, load_model_file
from fastmask.runners.registry import get_hook
from fastmask.models.fold import folded_inference_model
from fastmask.runtime import Runtime, autocast_ctx

__all__ = ['run_runtime', 'combine_tasks', 'split_tasks', 'as_18class', 'load_task_model', 'run_models', 'run_kind', 'task_probs', 'model_probs', 'predict_paths',
           'soft_vote', 'write_submission']


def combine_tasks(p_mask, p_gender, p_age) -> np.ndarray:
    "18-class probabilities as the outer product of the mask, gender and age heads' probabilities."
    p = np.einsum('nm,ng,na->nmga', np.asarray(p_mask), np.asarray(p_gender), np.asarray(p_age))
    return p.reshape(len(p), N_CLASSES)


def split_tasks(p18) -> dict[str, np.ndarray]:
    "Mask, gender and age probabilities of 18-class probabilities (marginals; class = mask*6 + gender*3 + age)."
    p = np.asarray(p18).reshape(-1, 3, 2, 3)
    return dict(mask=p.sum((2, 3)), gender=p.sum((1, 3)), age=p.sum((1, 2)))


def as_18class(probs: dict) -> np.ndarray | None:
    "18-class probabilities from task heads: the 'all' head, else mask x gender x age; None without them."
    if 'all' in probs: return probs['all']
    if all(t in probs for t in ('mask', 'gender', 'age')): return combine_tasks(probs['mask'], probs['gender'], probs['age'])
    return None


def soft_vote(probs: list[np.ndarray]) -> np.ndarray:
    "Unweighted mean of members' 18-class probabilities."
    if not probs: raise ValueError('soft voting needs at least one member')
    shapes = {p.shape for p in probs}
    if len(shapes) != 1: raise ValueError(f'members disagree on shape: {sorted(shapes)}')
    return np.mean(np.stack(probs), 0)


def run_models(run_dir) -> dict[str, Path]:
    "The task model files of a run folder, by task."
    models = RunDir(run_dir).models()
    if not models: raise FastmaskError(f'{run_dir}: no model files (not a finished run folder?)')
    return models


def run_kind(run_dir) -> str:
    "The runner kind recorded in a run folder's config.json ('train' when there is none)."
    return RunDir(run_dir).kind


def run_runtime(run_dir, **changes) -> Runtime:
    "The runtime a run folder records (its precision, channels-last, ...), with `changes` (None: unchanged) on top."
    return Runtime.from_config(RunDir(run_dir).config_or_empty()).changed(**changes)


def load_task_model(path):
    "A task model and its metadata from a task model file."
    ck = load_model_file(path)
    model = create_model(ck['arch'], ck['n_out'], pretrained=False, head=ck.get('head', 'linear'))
    model.load_state_dict(ck['state_dict'])
    return model.eval(), ck


@torch.no_grad()
def model_probs(model, meta, paths, bs: int = 64, runtime: Runtime | None = None, tta: bool = False) -> np.ndarray:
    "Softmax probabilities of one task model over image paths (validation transforms), at the runtime's precision."
    dev, rt = default_device(), runtime or Runtime()
    model = folded_inference_model(model, rt, dev)  # BatchNorm folded, channels-last / compile per the runtime
    dl = infer_dl(paths, meta['size'], meta['crop'], bs=bs, num_workers=rt.num_workers, device=dev,
                  stats=meta.get('stats'), cache=rt.cache)
    out = []
    for (xb,) in progress(dl, len(dl), f"predict {meta.get('task', '')}"):  # a bar in a terminal only
        xb = xb.as_subclass(torch.Tensor)   # fastai's TensorImage breaks a torch.compile'd model's tracing
        with autocast_ctx(rt, dev):
            p = model(xb).float().softmax(-1)
            if tta: p = (p + model(xb.flip(-1)).float().softmax(-1)) / 2
        out.append(p.cpu())
    return torch.cat(out).numpy()


def task_probs(run_dir, paths, bs: int = 64, runtime: Runtime | None = None, tta: bool = False) -> dict[str, np.ndarray]:
    """Probabilities of every task head of a finished run folder on image paths, by task ('all', 'mask', ...), with
    `runtime` (default: the run's own, so predictions use the precision it was validated with)."""
    paths, rt = list(map(str, paths)), runtime or run_runtime(run_dir)
    kind = run_kind(run_dir)
    if (pred := get_hook(kind, 'predict')) is not None:  # e.g. k-fold: soft vote of the fold folders
        return pred(run_dir, paths, bs=bs, runtime=runtime, tta=tta)
    models = run_models(run_dir)
    seen = pre(run_dir, paths) if (pre := get_hook(kind, 'preprocess')) else paths   # e.g. face crops
    probs = {t: model_probs(*load_task_model(p), seen, bs, rt, tta) for t, p in models.items()}
    if (heads := get_hook(kind, 'heads')) is not None: probs.update(heads(run_dir, paths, probs))
    return probs


def predict_paths(run_dir, paths, bs: int = 64, runtime: Runtime | None = None, tta: bool = False) -> np.ndarray:
    "18-class probabilities of a finished run on image paths (`runtime`: default the run's own)."
    probs = task_probs(run_dir, paths, bs, runtime, tta)
    if (p18 := as_18class(probs)) is not None: return p18
    raise FastmaskError(f"{run_dir}: has models for {', '.join(probs)} only; 18-class predictions need all three tasks")


def write_submission(path, eval_df: pd.DataFrame, probs: np.ndarray) -> Path:
    "Write `ImageID,ans` in info.csv order."
    if len(eval_df) != len(probs): raise ValueError(f'{len(probs)} predictions for {len(eval_df)} eval images')
    return write_csv(path, pd.DataFrame({'ImageID': eval_df['ImageID'].to_numpy(), 'ans': np.asarray(probs).argmax(1)}))
