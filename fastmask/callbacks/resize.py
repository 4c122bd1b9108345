"""Progressive resizing (fastai's lesson: train small first, then at full size): early training batches are scaled
down on the fly, then the size grows in steps to the recipe's `size`, which the last part of training and every
validation batch use. Forward and backward cost scales with pixels, so the small steps are cheap; the model sees
the full size long enough to adapt to it (FixRes: the apparent object size differs between train and test resolutions).

Recipe fields: `resize_from` (the first size as a fraction of `size`; 1.0 = off) and `resize_until` (the share of
training after which every batch is at full size). Sizes step by `step` pixels (16: Lite0's stride divides them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.mixup import MixUp

from fastmask.errors import RecipeError

__all__ = ['ProgressiveResize', 'resize_at', 'apply_resize']


def resize_at(pct: float, size: int, start: float, until: float, step: int = 16) -> int:
    "The training size at `pct` of training: `start * size` growing linearly to `size` at `until`, in `step` px steps."
    if start >= 1 or pct >= until: return size
    s = start + (1 - start) * max(pct, 0.0) / until
    return min(size, max(step, int(round(s * size / step)) * step))


class ProgressiveResize(Callback):
    "Scale training batches down early in training, growing to full size by `until`; validation stays at full size."
    order = MixUp.order + 1   # after the batch is final (MixUp, CutMix), before the model sees it

    def __init__(self, start: float = 0.75,   # the first size as a fraction of the full size
                 until: float = 0.5,          # share of training after which batches are at full size
                 step: int = 16):             # sizes are multiples of this
        if not 0 < start <= 1 or not 0 < until <= 1: raise RecipeError('resize_from and resize_until lie in (0, 1]')
        self.start, self.until, self.step = start, until, step

    def before_batch(self):
        if not self.training: return
        x = self.learn.xb[0]
        size = resize_at(self.pct_train, x.shape[-1], self.start, self.until, self.step)
        if size == x.shape[-1]: return
        cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        y = F.interpolate(x, size=(size, size), mode='bilinear', antialias=True, align_corners=False)
        if cl: y = y.contiguous(memory_format=torch.channels_last)
        self.learn.xb = (y, *self.learn.xb[1:])


def apply_resize(learn):
    "Add `ProgressiveResize` to a task Learner when its recipe asks for it (`resize_from` below 1)."
    r = learn.recipe
    if r.resize_from < 1: learn.add_cb(ProgressiveResize(r.resize_from, r.resize_until))
    return learn
