"""Per-epoch checkpoints written atomically into the run folder, and `fastmask resume RUN_DIR`.

After every finished epoch `CheckpointCallback` saves the model, the optimizer, the recorder (logged metrics,
smoothed loss), the state of every tracker (early stopping: best, wait; best-model saver: best and its file) and
of any callback with `state_dict()`/`load_state_dict()` (SWA), the random states (python, numpy, torch) and the
data loaders' shuffling state (fastai's `rng`, `BalancedMaskDL.draws`). Resuming replays the finished epochs'
logged values through the callbacks (so CSV logs, early stopping and best trackers see them exactly as before),
then restores everything and trains the remaining epochs: on the CPU the result equals an uninterrupted run.

Under DistributedDataParallel only rank 0 writes the checkpoint and every rank resumes from rank 0's file; model
weights are saved without wrapper prefixes (`module.`), and older files that have them still load. Random states are
stored as numpy arrays, so loading onto the model's device (CUDA) leaves them on the CPU where `torch` wants them.
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
from fastai.distributed import DistributedDL
from fastai.learner import Recorder
from fastai.torch_core import get_model, rank_distrib
from fastcore.foundation import L

from fastmask.callbacks.distributed import barrier, main_dir
from fastmask.errors import FastmaskError
from fastmask.io import save_torch, write_bytes
from fastmask.rundir import RunDir, load_model_file, strip_prefix, unwrapped_state

__all__ = ['CheckpointCallback', 'RunInterrupted', 'interruptible', 'rng_states', 'set_rng_states', 'load_checkpoint',
           'checkpoint_path', 'load_finished', 'CHECKPOINT_VERSION']

CHECKPOINT_VERSION = 1


class RunInterrupted(KeyboardInterrupt):
    "Ctrl-C or SIGTERM during a run; the message names the resume command."


def checkpoint_path(run_dir, task: str) -> Path:
    "The checkpoint file of one task in a run folder."
    return RunDir(run_dir).checkpoint(task)


def rng_states() -> dict:
    "The python, numpy, torch and CUDA (every device, and which one was current) random states; torch's as numpy arrays."
    cuda = torch.cuda.is_available()
    return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state().numpy(),
                cuda=[t.numpy() for t in torch.cuda.get_rng_state_all()] if cuda else None,
                cuda_device=torch.cuda.current_device() if cuda else None)


def _byte_state(t) -> torch.Tensor:
    "An RNG state as the CPU ByteTensor `torch` takes (files of older versions hold tensors, mapped to the model's device)."
    return torch.as_tensor(t).cpu()


def set_rng_states(s: dict) -> None:
    """Restore `rng_states` output: CUDA states of the devices that exist here; the current device gets the saver's
    current device's state (every rank of a distributed run resumes from rank 0's file)."""
    random.setstate(s['python'])
    np.random.set_state(s['numpy'])
    torch.set_rng_state(_byte_state(s['torch']))
    cuda = s.get('cuda')
    if cuda is None or not torch.cuda.is_available(): return
    for i, t in enumerate(cuda[:torch.cuda.device_count()]): torch.cuda.set_rng_state(_byte_state(t), i)
    src = s.get('cuda_device')
    if src is not None and src < len(cuda): torch.cuda.set_rng_state(_byte_state(cuda[src]), torch.cuda.current_device())


def load_checkpoint(fname, device) -> dict:
    "A checkpoint file loaded onto `device` (the model's), or a one-line error naming the file."
    try: return torch.load(fname, map_location=device, weights_only=False)
    except Exception as e: raise FastmaskError(f'{fname}: unreadable checkpoint ({type(e).__name__}); delete it to restart this task') from None


def _loader(dl):
    "The data loader a `DistributedDL` wraps (its shuffling state: rank 0's draw is the one broadcast)."
    return dl.dl if isinstance(dl, DistributedDL) else dl


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

    Distributed: rank 0 writes the file, every rank reads rank 0's (`main_dir`), so all replay the same epochs.
    Callback state: `state_dict()`/`load_state_dict()` where a callback has them, else its plain attributes
    (numbers, strings, tensors, modules such as SWA's `AveragedModel`, and lists/dicts of them)."""
    order = EarlyStoppingCallback.order + 1  # after the recorder, trackers, early stopping and SWA have seen the epoch

    def __init__(self, fname, resume: bool = True):
        self.fname, self.resume, self.ck, self.start = Path(fname), resume, None, 0

    def before_fit(self):
        self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')
        self.ck, self.start = None, 0
        fname = main_dir(self.fname)
        if not self.run or not self.resume or not fname.is_file(): return
        ck = load_checkpoint(fname, next(self.learn.model.parameters()).device)
        if ck.get('version') != CHECKPOINT_VERSION or ck.get('n_epoch') != self.n_epoch:
            raise FastmaskError(f"{fname}: checkpoint of a different fit ({ck.get('n_epoch')} epochs, this one has "
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
        if not rank_distrib(): save_torch(self.fname, self.state())

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
                    logs=[[i, *row] for i, row in enumerate(vals)], model=unwrapped_state(self.learn.model),
                    opt=self.learn.opt.state_dict(), callbacks=cbs, best_files=files,
                    recorder=dict(lrs=list(rec.lrs), iters=list(rec.iters), losses=list(rec.losses),
                                  smooth=(rec.smooth_loss.count, rec.smooth_loss.val)),
                    train_iter=self.learn.train_iter, rng=rng_states(),
                    dls=[dict(rng=dl.rng.getstate() if hasattr(dl, 'rng') else None, draws=getattr(dl, 'draws', None))
                         for dl in map(_loader, self.dls.loaders)])

    def restore(self, ck: dict) -> None:
        "Put the learner, its callbacks, data loaders and random generators back in the checkpoint's state."
        get_model(self.learn.model).load_state_dict(strip_prefix(ck['model']))   # files of older versions: `module.` keys
        self.learn.opt.load_state_dict(ck['opt'])
        rec, r = self.recorder, ck['recorder']
        rec.lrs, rec.iters, rec.losses = list(r['lrs']), list(r['iters']), list(r['losses'])
        rec.smooth_loss.count, rec.smooth_loss.val = r['smooth']
        self.learn.train_iter = ck['train_iter']
        for k, cb in self._keyed():
            if k in ck['callbacks']:
                if _has_state(cb): cb.load_state_dict(ck['callbacks'][k])
                else: cb.__dict__.update(ck['callbacks'][k])
            if k in ck['best_files'] and not rank_distrib(): write_bytes(self._best_file(cb), ck['best_files'][k])
        barrier()   # rank 0's best-model file is back before any rank loads it
        for dl, s in zip(map(_loader, self.dls.loaders), ck['dls']):
            if s['rng'] is not None: dl.rng.setstate(s['rng'])
            if s['draws'] is not None: dl.draws = s['draws']
        set_rng_states(ck['rng'])


def load_finished(learn, run_dir):
    "A task Learner with the weights and logged epochs of its finished model file (resume skips the task)."
    rd = RunDir(run_dir)
    get_model(learn.model).load_state_dict(load_model_file(rd.model(learn.task))['state_dict'])
    log = rd.metrics(learn.task)
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
