"""One line at the start of each fit with its expected duration, measured on the first training batches.

fastai's progress bar shows an epoch's time only once the epoch has ended; on a laptop CPU a fit of six epochs
can take an hour, so the user should know after a few seconds whether to wait or to shrink the run.
"""
from __future__ import annotations

import time

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback

from fastmask.callbacks.validation import validated_epochs

__all__ = ['ExpectedTime', 'expected_seconds', 'human_seconds']

#: validation batches cost about this share of a training batch (a forward pass, no backward or optimizer step)
VALID_SHARE = 1 / 3


def expected_seconds(batch_s: float, n_train: int, n_valid: int, epochs: int, validated: int | None = None) -> float:
    """Seconds of `epochs` epochs of `n_train` training and `n_valid` validation batches at `batch_s` a training batch,
    `validated` of them with their validation pass (default: all)."""
    validated = epochs if validated is None else validated
    return batch_s * (n_train * epochs + VALID_SHARE * n_valid * validated)


def human_seconds(s: float) -> str:
    "`42 s`, `3 min 20 s`, `1 h 05 min`."
    s = int(round(s))
    if s < 60: return f'{s} s'
    if s < 3600: return f'{s // 60} min {s % 60:02d} s'
    return f'{s // 3600} h {s % 3600 // 60:02d} min'


class ExpectedTime(Callback):
    "Print the fit's expected duration once `warmup + measure` training batches of its first epoch have run."
    order = ProgressCallback.order + 1   # after fastai's bar has started its epoch
    def __init__(self, warmup: int = 1, measure: int = 4, prefix: str = '', log=print):
        self.warmup, self.measure, self.prefix, self.log = warmup, measure, prefix, log   # batches skipped, batches timed

    def before_fit(self):
        self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')
        self.seen, self.t0, self.first, self.said = 0, None, None, False

    def before_epoch(self):
        if self.first is None: self.first = self.epoch     # a resumed fit starts later: only the rest counts

    def before_batch(self):
        if self.training and not self.said and self.seen == 0: self._start = time.perf_counter()

    def after_batch(self):
        if not self.training or self.said: return
        self.seen += 1
        n_train = len(self.dls.train)
        warmup = min(self.warmup, n_train - 1)                  # a one-batch epoch: time that batch
        measure = max(1, min(self.measure, n_train - warmup))   # said within the first epoch
        if self.seen == warmup: self.t0 = time.perf_counter()
        if warmup == 0 and self.t0 is None: self.t0 = self._start
        if self.seen < warmup + measure: return
        batch_s = (time.perf_counter() - self.t0) / measure
        left = self.n_epoch - self.first
        n_valid = len(self.dls.valid) if self.dls.valid is not None else 0
        vl = getattr(self, 'validate_last', None)   # ValidateLast: only the last epochs are validated
        total = expected_seconds(batch_s, n_train, n_valid, left,
                                 validated_epochs(self.n_epoch, vl.epochs, self.first) if vl is not None else None)
        self.log(f"{self.prefix}expected time: about {human_seconds(total)} for {left} epoch{'s' if left != 1 else ''} "
                 f"({batch_s:.2f} s a batch on the first {measure}, {n_train} + {n_valid} batches an epoch)", flush=True)
        self.said = True
