"""Loss functions by name: cross entropy, label smoothing and focal (fastai's), soft macro F1 and weighted mixes."""
from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from fastai.losses import CrossEntropyLossFlat, FocalLossFlat, LabelSmoothingCrossEntropyFlat
from fastai.torch_core import Module

from fastmask.errors import RecipeError

__all__ = ['LOSSES', 'register_loss', 'get_loss', 'soft_f1', 'SoftF1LossFlat', 'MixedLoss']

LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    "Register a loss factory `f(n_classes, **params) -> loss_func` under `name`."
    def deco(f):
        LOSSES[name] = f
        return f
    return deco


def soft_f1(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    "Macro F1 with probabilities as fractional TP/FP/FN; classes with no true and no predicted mass are left out, as in scikit-learn."
    y = F.one_hot(target.long().view(-1), probs.shape[-1]).to(probs.dtype)
    probs = probs.view(-1, probs.shape[-1])
    tp, fp, fn = (probs * y).sum(0), (probs * (1 - y)).sum(0), ((1 - probs) * y).sum(0)
    denom = 2 * tp + fp + fn
    present = denom > 0
    return (2 * tp[present] / denom[present]).sum() / present.sum().clamp(min=1)


class _Decoded:
    "fastai's classification-loss protocol: softmax activation, argmax decoding, integer targets."
    y_int = True
    def activation(self, x): return F.softmax(x, dim=-1)
    def decodes(self, x): return x.argmax(dim=-1)


class SoftF1LossFlat(_Decoded, Module):
    "1 - soft macro F1 over the batch, for any number of classes (the class count is the logits' last dimension)."
    def __init__(self, n_classes: int | None = None, reduction: str = 'mean'):
        self.n_classes, self.reduction = n_classes, reduction

    def forward(self, output, target):
        output = output.float().view(-1, output.shape[-1])
        if self.n_classes is not None and output.shape[-1] != self.n_classes:
            raise ValueError(f'soft F1 loss built for {self.n_classes} classes got logits with {output.shape[-1]}')
        loss = 1 - soft_f1(F.softmax(output, -1), target)
        # F1 is a batch statistic: per-item losses (reduction='none', e.g. fastai's top_losses) repeat the batch value
        return loss.expand(len(output)) if self.reduction == 'none' else loss


class MixedLoss(_Decoded, Module):
    "Weighted sum of losses that share softmax/argmax decoding, e.g. 0.6 * CE + 0.4 * soft F1."
    def __init__(self, losses, weights):
        if len(losses) != len(weights): raise ValueError('one weight per loss')
        self.losses, self.weights = list(losses), [float(w) for w in weights]

    @property
    def reduction(self) -> str: return getattr(self.losses[0], 'reduction', 'mean')
    @reduction.setter
    def reduction(self, v: str):
        for l in self.losses: l.reduction = v

    def forward(self, output, target):
        return sum(w * l(output, target) for l, w in zip(self.losses, self.weights) if w != 0)

    def __repr__(self): return ' + '.join(f'{w:g} * {l!r}' for l, w in zip(self.losses, self.weights))


def _check_weight(name: str, w: float) -> float:
    if not 0 <= w <= 1: raise RecipeError(f'loss parameter {name}={w} must lie between 0 and 1')
    return float(w)


@register_loss('ce')
def cross_entropy(n_classes: int):
    "Plain cross entropy."
    return CrossEntropyLossFlat()


@register_loss('label_smoothing')
def label_smoothing(n_classes: int, eps: float = 0.1):
    "fastai's label-smoothing cross entropy."
    return LabelSmoothingCrossEntropyFlat(eps=eps)


@register_loss('focal')
def focal(n_classes: int, gamma: float = 2.0):
    "fastai's focal loss (cross entropy down-weighting easy examples by `(1-p)**gamma`)."
    return FocalLossFlat(gamma=gamma)


@register_loss('f1')
def f1(n_classes: int):
    "1 - soft macro F1 (the report's failed age loss)."
    return SoftF1LossFlat(n_classes)


@register_loss('ce_f1')
def ce_f1(n_classes: int, f1_weight: float = 0.5):
    "(1 - f1_weight) * cross entropy + f1_weight * soft F1."
    w = _check_weight('f1_weight', f1_weight)
    return MixedLoss([CrossEntropyLossFlat(), SoftF1LossFlat(n_classes)], [1 - w, w])


@register_loss('f1_focal')
def f1_focal(n_classes: int, f1_weight: float = 0.4, gamma: float = 2.0):
    "f1_weight * soft F1 + (1 - f1_weight) * focal loss (a 0.766-F1 public entry's 0.4 / 0.6 mix)."
    w = _check_weight('f1_weight', f1_weight)
    return MixedLoss([SoftF1LossFlat(n_classes), FocalLossFlat(gamma=gamma)], [w, 1 - w])


def get_loss(name: str, n_classes: int, **params):
    "The loss named `name` for `n_classes` classes; unknown names or parameters are a RecipeError."
    if name not in LOSSES: raise RecipeError(f"unknown loss '{name}' (one of {', '.join(sorted(LOSSES))})")
    f = LOSSES[name]
    known = [p for p in inspect.signature(f).parameters if p != 'n_classes']
    bad = sorted(set(params) - set(known))
    if bad: raise RecipeError(f"loss '{name}' has no parameter {', '.join(bad)} (it takes {', '.join(known) or 'none'})")
    return f(n_classes, **params)
