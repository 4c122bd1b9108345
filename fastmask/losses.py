"""Loss functions by name: cross entropy and label smoothing (fastai's)."""
from __future__ import annotations

from typing import Callable

from fastai.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat

from .errors import RecipeError

__all__ = ['LOSSES', 'register_loss', 'get_loss']

LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    "Register a loss factory `f(n_classes, **params) -> loss_func` under `name`."
    def deco(f):
        LOSSES[name] = f
        return f
    return deco


@register_loss('ce')
def cross_entropy(n_classes: int, **_):
    "Plain cross entropy."
    return CrossEntropyLossFlat()


@register_loss('label_smoothing')
def label_smoothing(n_classes: int, eps: float = 0.1, **_):
    "fastai's label-smoothing cross entropy."
    return LabelSmoothingCrossEntropyFlat(eps=eps)


def get_loss(name: str, n_classes: int, **params):
    "The loss named `name` for `n_classes` classes."
    if name not in LOSSES: raise RecipeError(f"unknown loss '{name}' (one of {', '.join(sorted(LOSSES))})")
    return LOSSES[name](n_classes, **params)
