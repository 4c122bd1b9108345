"""Stochastic Weight Averaging as a fastai callback, built on `torch.optim.swa_utils`.

Only BatchNorm layers (SyncBatchNorm included) that trained on batch statistics get fresh statistics for the averaged
weights: layers kept in eval mode while training (`FrozenBN`, fastai's `BnFreeze`) keep the running statistics the
weights were fitted with, since recomputing them on the training data is the train/eval mismatch those modes avoid.
Under DistributedDataParallel the average and the layer names are the wrapped model's (fastai unwraps it before
`after_fit`), so the wrapper's `module.` prefix never hides a layer from the recompute.

The averaged model's valid loss and metrics land in `learn.swa_metrics` and, as a last row whose epoch is `swa`,
in the per-epoch log (fastai's logger, so `CSVLogger` files and the printed table both show it).
"""
from __future__ import annotations

import time
from types import SimpleNamespace

import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.torch_core import get_model
from fastcore.basics import store_attr
from fastprogress.core import format_time
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import AveragedModel

__all__ = ['SWACallback']

_BN = _BatchNorm   # BatchNorm1d/2d/3d and SyncBatchNorm


def _bare(name: str) -> str:
    "A module name without DistributedDataParallel's `module.` (in checkpoints of older versions)."
    while name.startswith('module.'): name = name[len('module.'):]
    return name


class SWACallback(Callback):
    "From epoch `start_epoch` (0-based) train at a constant `swa_lr`, average the weights after each epoch, and leave the averaged model (fresh BatchNorm statistics) in `learn.model`."
    order = CSVLogger.order - 5  # before the trackers and CSVLogger: our after_fit logs through the CSV logger before it closes

    def __init__(self, start_epoch: int, swa_lr: float | None = None, log: bool = True):
        store_attr('start_epoch,swa_lr,log')
        self.swa_model, self.swa_metrics = None, None

    def before_fit(self):
        "Disabled under `lr_find` and `get_preds` (TrackerCallback's rule); fresh average for every fit."
        self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')
        self.swa_model, self.swa_metrics, self.averaged, self.trained_bn = None, None, [], []
        self.learn.swa_metrics = None

    @property
    def swa_phase(self) -> bool: return self.epoch >= self.start_epoch

    def before_step(self):
        "During SWA epochs the rate is constant: override whatever a scheduler set in `before_batch`."
        if self.swa_phase and self.swa_lr is not None: self.opt.set_hyper('lr', self.swa_lr)

    def after_train(self):
        "Add this epoch's final weights to the average (before validation, so early stopping cannot skip it)."
        if not self.swa_phase: return
        model = get_model(self.model)   # not a DistributedDataParallel wrapper: names without `module.`
        if self.swa_model is None: self.swa_model = AveragedModel(model)
        self.swa_model.update_parameters(model)
        self.averaged.append(self.epoch)
        self.trained_bn = sorted(set(self.trained_bn) | {n for n, m in model.named_modules()   # a list: resumable
                                                          if isinstance(m, _BN) and m.training})

    def after_fit(self):
        "Copy the averaged weights into the model, recompute BatchNorm statistics, and validate the result."
        if self.swa_model is None: return
        with torch.no_grad():
            for p, q in zip(get_model(self.learn.model).parameters(), self.swa_model.module.parameters()): p.copy_(q)
        self._update_bn()
        self.swa_model = None
        self._validate()

    @torch.no_grad()
    def _update_bn(self):
        "`update_bn` for the BatchNorm layers that trained on batch statistics; the others stay in eval mode, unchanged."
        model, trained = get_model(self.learn.model), {_bare(n) for n in self.trained_bn}
        fresh = [m for n, m in model.named_modules() if isinstance(m, _BN) and n in trained]
        if not fresh: return
        was_training, momenta = model.training, [m.momentum for m in fresh]
        model.eval()
        for m in fresh: m.reset_running_stats(); m.momentum = None; m.train()   # a cumulative mean, as update_bn
        dl = self.dls.train if len(self.dls.train) else self.dls.train.new(drop_last=False)
        for b in dl: model(torch.Tensor.as_subclass(b[0], torch.Tensor))
        for m, mom in zip(fresh, momenta): m.momentum = mom
        model.train(was_training)

    @torch.no_grad()
    def _validate(self):
        "Valid loss and metrics of the averaged model in `learn.swa_metrics`, logged as an 'swa' row (CSV log included)."
        start, model = time.time(), self.learn.model
        was_training = model.training
        model.eval()
        mets = list(self.learn.metrics)
        for m in mets: m.reset()
        total, count = 0., 0
        for xb, yb in self.dls.valid:
            pred = model(xb)
            total += float(self.learn.loss_func(pred, yb)) * len(yb)
            count += len(yb)
            shim = SimpleNamespace(pred=pred, yb=(yb,), y=yb, xb=(xb,), loss=None, to_detach=self.learn.to_detach)
            for m in mets: m.accumulate(shim)
        model.train(was_training)
        if not count: return
        res = dict(valid_loss=total / count, **{m.name: float(m.value) for m in mets},
                   epochs_averaged=list(self.averaged))
        self.swa_metrics = self.learn.swa_metrics = res
        if self.log and hasattr(self.learn, 'recorder'):
            row = [{'epoch': 'swa', 'train_loss': '', 'time': format_time(time.time() - start)}.get(n, res.get(n, ''))
                   for n in self.recorder.metric_names]
            self.learn.logger(row)
