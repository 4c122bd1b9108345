"""Validation in the last epochs of a fit only: the epochs before train and skip their validation pass.

On a 2-core CPU the validation people are a quarter of a cheap epoch's time (a forward pass over every photo of
about 120 people), spent each epoch to log a score nobody acts on until the end. With one-cycle the best epoch is
one of the last, so the best-epoch checkpoint (`SaveModelCallback`) picks among the validated epochs: the trackers
(best model, early stopping) sit the skipped epochs out, which log NaN for the validation loss and metrics.
"""
from __future__ import annotations

import math

from fastai.callback.core import Callback, CancelValidException
from fastai.callback.tracker import TrackerCallback
from fastai.learner import Recorder

__all__ = ['ValidateLast', 'first_validated', 'validated_epochs']


def first_validated(n_epoch: int, last: int) -> int:
    "The first epoch (0-based) of an `n_epoch` fit that runs its validation pass when only the `last` ones do (0 = all)."
    return max(0, n_epoch - last) if last else 0


def validated_epochs(n_epoch: int, last: int, start: int = 0) -> int:
    "How many of epochs `start..n_epoch-1` are validated when only the `last` ones are (0 = all)."
    return n_epoch - max(first_validated(n_epoch, last), start)


class ValidateLast(Callback):
    "Run the validation pass only in the fit's last `epochs` epochs; the others log NaN for its loss and metrics."
    order = Recorder.order + 1   # after the Recorder resets its validation metrics, before the trackers read them
    def __init__(self, epochs: int = 1):
        if epochs < 1: raise ValueError(f'ValidateLast needs at least one validated epoch, not {epochs}')
        self.epochs = epochs   # validated epochs at the end of the fit

    def before_fit(self): self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')

    def before_validate(self):
        self.skipped = self.epoch < first_validated(self.n_epoch, self.epochs)
        for cb in self.learn.cbs.filter(lambda c: isinstance(c, TrackerCallback)): cb.run = not self.skipped
        if self.skipped: raise CancelValidException()

    def after_validate(self):   # a cancelled pass logs nothing: NaN in place of the loss and each metric
        rec = self.recorder
        if self.skipped and rec.valid_metrics: rec.log += [math.nan] * (1 + len(self.learn.metrics))
