"""CutMix of vertical halves (a top-entry trick): the left part of one photo, the right part of another.

Labels are mixed by area, like fastai's `CutMix` (fastai.callback.mixup): the loss is
`lam * loss(y) + (1 - lam) * loss(y_partner)` with `lam` the share of the photo kept from the original.
With `force_old`, every partner is a >= 60 person of the batch when there is one (the rare age group).
Recipe fields: `cutmix='halves'`, `cutmix_p`, `cutmix_old`, `cutmix_cut`.
"""
from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.callback.mixup import MixUp

from fastmask.errors import RecipeError

__all__ = ['half_cutmix', 'partners', 'old_mask', 'HalfCutMix', 'apply_cutmix']


def old_mask(y: torch.Tensor, task: str) -> torch.Tensor | None:
    "Which targets are >= 60 people (None for tasks whose labels carry no age)."
    if task == 'all': return y % 3 == 2
    if task == 'age': return y == 2
    return None


def partners(y: torch.Tensor, old: torch.Tensor | None = None, generator=None) -> torch.Tensor:
    "A partner index per item: a random permutation, or a random >= 60 item of the batch where `old` has one."
    n = len(y)
    perm = torch.randperm(n, generator=generator, device='cpu')
    if old is None or not bool(old.any()): return perm.to(y.device)
    pool = torch.nonzero(old.cpu(), as_tuple=True)[0]
    return pool[torch.randint(len(pool), (n,), generator=generator)].to(y.device)


def half_cutmix(x: torch.Tensor, partner: torch.Tensor, cut: float = 0.5, keep_left: bool = True):
    "Images whose columns right (or left) of `cut * width` come from `x[partner]`, and the area share `lam` kept."
    w = x.shape[-1]
    c = min(max(int(round(w * cut)), 0), w)
    out = x.clone()
    if keep_left: out[..., c:] = x[partner][..., c:]
    else: out[..., :c] = x[partner][..., :c]
    return out, (c if keep_left else w - c) / w


class HalfCutMix(Callback):
    "CutMix of vertical halves on training batches, with the loss mixed by area."
    run_valid, order = False, MixUp.order

    def __init__(self, p: float = 1.0, cut: float = 0.5, force_old: bool = False, task: str = 'all'):
        if not 0 < cut < 1: raise RecipeError(f'cutmix_cut {cut} must lie strictly between 0 and 1')
        self.p, self.cut, self.force_old, self.task = p, cut, force_old, task
        self.lam, self.yb1 = 1.0, None

    def before_train(self):
        self.old_lf, self.learn.loss_func = self.learn.loss_func, self.lf

    def after_train(self):
        if hasattr(self, 'old_lf'): self.learn.loss_func = self.old_lf

    def after_cancel_train(self): self.after_train()
    def after_cancel_fit(self): self.after_train()

    def before_batch(self):
        x, y = self.xb[0], self.yb[0]
        if torch.rand(()).item() >= self.p:
            self.lam, self.yb1 = 1.0, self.yb
            return
        idx = partners(y, old_mask(y, self.task) if self.force_old else None)
        keep_left = bool(torch.rand(()).item() < 0.5)
        xm, self.lam = half_cutmix(x, idx, self.cut, keep_left)
        self.learn.xb, self.yb1 = (xm,), (y[idx],)

    def lf(self, pred, *yb):
        "The original loss on both label sets, mixed by the kept area."
        if not self.training or self.lam == 1.0: return self.old_lf(pred, *yb)
        return torch.lerp(self.old_lf(pred, *self.yb1), self.old_lf(pred, *yb), self.lam)


def apply_cutmix(learn):
    "Add `HalfCutMix` to a task Learner when its recipe's `cutmix` field asks for it."
    r = learn.recipe
    if not r.cutmix: return learn
    if r.cutmix != 'halves': raise RecipeError(f"unknown cutmix '{r.cutmix}' (halves)")
    learn.add_cb(HalfCutMix(p=r.cutmix_p, cut=r.cutmix_cut, force_old=r.cutmix_old, task=learn.task))
    return learn
