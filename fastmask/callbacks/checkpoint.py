"""Per-epoch checkpoints written atomically into the run folder, and `fastmask resume RUN_DIR`.

After every finished epoch `CheckpointCallback` saves the model, the optimizer, the recorder (logged metrics,
smoothed loss), the state of every tracker (early stopping: best, wait; best-model saver: best and its file) and
of any callback with `state_dict()`/`load_state_dict()` (SWA), the random states (python, numpy, torch) and the
data loaders' shuffling state (fastai's `rng`, `BalancedMaskDL.draws`). Resuming replays the finished epochs'
logged values through the callbacks (so CSV logs, early stopping and best trackers see them exactly as before),
then restores everything and trains the remaining epochs: on the CPU the result equals an uninterrupted run.
"""
from __future__ import annotations

import random
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback, CancelEpochException
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Recorder
from fastcore.foundation import L

from fastmask.errors import FastmaskError
from fastmask.io import save_torch, write_bytes

__all__ = ['CheckpointCallback', 'RunInterrupted', 'interruptible', 'rng_states', 'set_rng_states',
           'checkpoint_path', 'load_finished', 'CHECKPOINT_VERSION']

CHECKPOINT_VERSION = 1


class RunInterrupted(KeyboardInterrupt):
    "Ctrl-C or SIGTERM during a run; the message names the resume command."


def checkpoint_path(run_dir, task: str) -> Path:
    "The checkpoint file of one task in a run folder."
    return Path(run_dir) / f'checkpoint_{task}.pth'


def rng_states() -> dict:
    "The python, numpy and torch (and CUDA) random states."
    return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def set_rng_states(s: dict) -> None:
    "Restore `rng_states` output."
    random.setstate(s['python'])
    np.random.set_state(s['numpy'])
    torch.set_rng_state(s['torch'])
    if s.get('cuda') is not None and torch.cuda.is_available(): torch.cuda.set_rng_state_all(s['cuda'])


def _plain(v) -> bool:
    "Whether a callback attribute is state worth saving: numbers, strings, tensors, modules and lists/dicts of them."
    if v is None or isinstance(v, (bool, int, float, str, np.generic, torch.Tensor, torch.nn.Module)): return True
    if isinstance(v, (list, tuple)): return all(map(_plain, v))
    if isinstance(v, dict): return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _attr_state(cb) -> dict:
    "The plain attributes of a callback without `state_dict` (trackers: best, wait; SWA: averaged model, epochs)."
    return {k: v for k, v in cb.__dict__.items() if k not in ('learn', 'run') and not k.startswith('__') and _plain(v)}


def _has_state(cb) -> bool:
    "A callback that owns `state_dict`/`load_state_dict` (not one reached through fastai's attribute delegation)."
    return callable(getattr(type(cb), 'state_dict', None)) and callable(getattr(type(cb), 'load_state_dict', None))


class CheckpointCallback(Callback):
    """Save a resumable checkpoint after every epoch; if `fname` exists when fitting starts, continue from it.

    Callback state: `state_dict()`/`load_state_dict()` where a callback has them, else its plain attributes
    (numbers, strings, tensors, modules such as SWA's `AveragedModel`, and lists/dicts of them)."""
    order = EarlyStoppingCallback.order + 1  # after the recorder, trackers, early stopping and SWA have seen the epoch

    def __init__(self, fname, resume: bool = True):
        self.fname, self.resume, self.ck, self.start = Path(fname), resume, None, 0

    def before_fit(self):
        self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')
        self.ck, self.start = None, 0
        if not self.run or not self.resume or not self.fname.is_file(): return
        dev = next(self.learn.model.parameters()).device
        try: ck = torch.load(self.fname, map_location=dev, weights_only=False)
        except Exception as e: raise FastmaskError(f'{self.fname}: unreadable checkpoint ({type(e).__name__}); delete it to restart this task') from None
        if ck.get('version') != CHECKPOINT_VERSION or ck.get('n_epoch') != self.n_epoch:
            raise FastmaskError(f"{self.fname}: checkpoint of a different fit ({ck.get('n_epoch')} epochs, this one has "
                                f"{self.n_epoch}); delete it to restart this task")
        self.ck, self.start = ck, ck['epoch'] + 1

    def before_epoch(self):
        if self.epoch < self.start:  # replay a finished epoch's logged values, train nothing
            self.recorder.log = L(self.ck['logs'][self.epoch])
            raise CancelEpochException

    def after_epoch(self):
        if self.epoch < self.start:
            if self.epoch == self.start - 1: self.restore(self.ck)
            return
        save_torch(self.fname, self.state())

    def _keyed(self):
        "(key, callback) of every callback, keys unique by class name and position."
        seen = {}
        for cb in self.learn.cbs:
            n = type(cb).__name__
            seen[n] = seen.get(n, -1) + 1
            yield f'{n}.{seen[n]}', cb

    def _best_file(self, cb) -> Path:
        return Path(self.learn.path) / self.learn.model_dir / f'{cb.fname}.pth'

    def state(self) -> dict:
        "Everything needed to continue after this epoch."
        rec, cbs, files = self.recorder, {}, {}
        for k, cb in self._keyed():
            if cb is self or isinstance(cb, Recorder): continue
            cbs[k] = cb.state_dict() if _has_state(cb) else _attr_state(cb)
            if isinstance(cb, SaveModelCallback) and self._best_file(cb).is_file(): files[k] = self._best_file(cb).read_bytes()
        vals = [[v.item() if hasattr(v, 'item') else v for v in row] for row in rec.values]
        return dict(version=CHECKPOINT_VERSION, epoch=self.epoch, n_epoch=self.n_epoch,
                    logs=[[i, *row] for i, row in enumerate(vals)], model=self.learn.model.state_dict(),
                    opt=self.learn.opt.state_dict(), callbacks=cbs, best_files=files,
                    recorder=dict(lrs=list(rec.lrs), iters=list(rec.iters), losses=list(rec.losses),
                                  smooth=(rec.smooth_loss.count, rec.smooth_loss.val)),
                    train_iter=self.learn.train_iter, rng=rng_states(),
                    dls=[dict(rng=dl.rng.getstate() if hasattr(dl, 'rng') else None, draws=getattr(dl, 'draws', None))
                         for dl in self.dls.loaders])

    def restore(self, ck: dict) -> None:
        "Put the learner, its callbacks, data loaders and random generators back in the checkpoint's state."
        self.learn.model.load_state_dict(ck['model'])
        self.learn.opt.load_state_dict(ck['opt'])
        rec, r = self.recorder, ck['recorder']
        rec.lrs, rec.iters, rec.losses = list(r['lrs']), list(r['iters']), list(r['losses'])
        rec.smooth_loss.count, rec.smooth_loss.val = r['smooth']
        self.learn.train_iter = ck['train_iter']
        for k, cb in self._keyed():
            if k in ck['callbacks']:
                if _has_state(cb): cb.load_state_dict(ck['callbacks'][k])
                else: cb.__dict__.update(ck['callbacks'][k])
            if k in ck['best_files']: write_bytes(self._best_file(cb), ck['best_files'][k])
        for dl, s in zip(self.dls.loaders, ck['dls']):
            if s['rng'] is not None: dl.rng.setstate(s['rng'])
            if s['draws'] is not None: dl.draws = s['draws']
        set_rng_states(ck['rng'])


def load_finished(learn, run_dir):
    "A task Learner with the weights and logged epochs of its finished `model_{task}.pth` (resume skips the task)."
    run_dir = Path(run_dir)
    ck = torch.load(run_dir / f'model_{learn.task}.pth', map_location='cpu', weights_only=False)
    learn.model.load_state_dict(ck['state_dict'])
    log = run_dir / f'metrics_{learn.task}.csv'
    rows = pd.read_csv(log).drop(columns=['epoch', 'time'], errors='ignore').values.tolist() if log.is_file() else []
    learn.recorder.values = rows
    return learn


@contextmanager
def interruptible(run_dir):
    "Turn SIGTERM into Ctrl-C, and Ctrl-C into `RunInterrupted` naming the resume command."
    def on_term(signum, frame): raise KeyboardInterrupt
    old = None
    try: old = signal.signal(signal.SIGTERM, on_term)
    except ValueError: pass  # not the main thread
    try: yield
    except KeyboardInterrupt as e:
        if isinstance(e, RunInterrupted): raise
        raise RunInterrupted(f"interrupted; finished epochs are saved in {run_dir}: continue with "
                             f"'fastmask resume {run_dir}'") from None
    finally:
        if old is not None: signal.signal(signal.SIGTERM, old)
