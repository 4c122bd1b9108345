"""Class-frequency weighting: a weighted random sampler (fastai's `WeightedDL`) and a class-weighted loss.

Recipe fields: `sampler='weighted'` draws training photos with probability 1 / (frequency of their class);
`('class_weights', True)` weights the cross-entropy (or label-smoothing) loss by inverse class frequency.
"""
from __future__ import annotations

import numpy as np
import torch
from fastai.callback.data import WeightedDL
from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat

from fastmask.data.block import BalancedMaskDL
from fastmask.errors import RecipeError
from fastmask.labels import task_names

__all__ = ['class_counts', 'sample_weights', 'class_weights', 'weighted_train_dl', 'class_weighted_loss',
           'train_labels', 'apply_sampling']


def class_counts(labels, n_classes: int) -> np.ndarray:
    "How many items of each class."
    return np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)


def sample_weights(labels, n_classes: int | None = None) -> np.ndarray:
    "Per-item drawing probability proportional to 1 / (count of its class): every class is drawn equally often."
    labels = np.asarray(labels, dtype=int)
    counts = class_counts(labels, n_classes or labels.max() + 1)
    w = 1.0 / counts[labels]
    return w / w.sum()


def class_weights(labels, n_classes: int) -> torch.Tensor:
    "Loss weight per class: inverse frequency, mean 1 over the classes present (absent classes weigh 1)."
    counts = class_counts(labels, n_classes).astype(float)
    present = counts > 0
    w = np.ones(n_classes)
    w[present] = 1.0 / counts[present]
    w[present] *= present.sum() / w[present].sum()
    return torch.tensor(w, dtype=torch.float32)


def train_labels(learn) -> np.ndarray:
    "Class indices of a task Learner's training items, read through the dataset's label pipeline (no images)."
    ys = learn.dls.train_ds.tls[1]
    return np.array([int(ys[i]) for i in range(len(ys))], dtype=int)


def weighted_train_dl(dl, wgts):
    "The training loader redrawn each epoch with replacement, item i with probability `wgts[i]`."
    return dl.new(cls=WeightedDL, wgts=np.asarray(wgts, dtype=float))


def class_weighted_loss(name: str, weight: torch.Tensor, **params):
    "Cross entropy or label smoothing with per-class weights."
    if name == 'ce': return CrossEntropyLossFlat(weight=weight)
    if name == 'label_smoothing': return LabelSmoothingCrossEntropyFlat(weight=weight, eps=params.get('eps', 0.1))
    raise RecipeError(f"class_weights works with loss 'ce' or 'label_smoothing', not '{name}'")


def apply_sampling(learn):
    "Apply a recipe's `sampler` and `class_weights` fields to a task Learner (the balanced mask loader is kept)."
    r = learn.recipe
    sampler, weighted_loss = r.sampler, r.class_weights
    if not sampler and not weighted_loss: return learn
    n = len(task_names(learn.task))
    y = train_labels(learn)
    if sampler not in ('', 'weighted'): raise RecipeError(f"unknown sampler '{sampler}' (weighted)")
    if sampler == 'weighted' and not isinstance(learn.dls.train, BalancedMaskDL):
        learn.dls.train = weighted_train_dl(learn.dls.train, sample_weights(y, n))
    if weighted_loss:
        learn.loss_func = class_weighted_loss(r.loss, class_weights(y, n).to(learn.dls.device or 'cpu'),
                                              **dict(r.loss_params))
    return learn
