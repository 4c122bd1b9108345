"""Optional experiment trackers (`--track tensorboard|mlflow|wandb`), offline, writing into the run folder."""
from __future__ import annotations

import importlib
import json
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger

from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.plots import report

__all__ = ['TRACKERS', 'check_tracker', 'Tracker', 'TensorBoardTracker', 'MLflowTracker', 'WandbTracker',
           'MLflowCallback', 'WandbCallback', 'tracking', 'tracker_callbacks', 'flatten']

_ACTIVE: ContextVar['Tracker | None'] = ContextVar('fastmask_tracker', default=None)


def flatten(d: dict, prefix: str = '') -> dict:
    "Nested dicts as one level with dotted keys, e.g. `recipe.arch`."
    out = {}
    for k, v in d.items():
        if isinstance(v, dict): out.update(flatten(v, f'{prefix}{k}.'))
        else: out[f'{prefix}{k}'] = v
    return out


def _read_json(path: Path) -> dict:
    try: return json.loads(Path(path).read_text())
    except (OSError, ValueError): return {}


class Tracker:
    "One tracked run folder: logs the config at start, a callback per task fit, summary and plots at the end."
    package = extra = name = ''

    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.config = _read_json(self.run_dir / 'config.json')
        self.start()

    def start(self): pass
    def callbacks(self, task: str) -> list: return []
    def log_end(self, summary: dict, plots: list[Path]): pass
    def close(self, ok: bool): pass

    def finish(self, ok: bool):
        "Log summary.json and the report's PNGs (if the run finished), then close."
        try:
            summary = _read_json(self.run_dir / 'summary.json') if ok else {}
            plots = []
            if summary:
                try: plots = report(self.run_dir)
                except FastmaskError: plots = []
            if ok: self.log_end(summary, plots)
        finally: self.close(ok and bool(summary))

    def params(self) -> dict:
        "The config as flat string parameters: recipe fields, overrides, data and package versions."
        keep = {k: v for k, v in self.config.items() if k in ('recipe', 'overrides', 'data', 'weights', 'versions', 'device')}
        return {k: str(v) for k, v in flatten(keep).items()}

    def numbers(self, summary: dict) -> dict[str, float]:
        "The numeric entries of a summary, flattened (`epochs.mask`, `valid_f1`, ...)."
        return {k: float(v) for k, v in flatten(summary).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker(Tracker):
    "fastai's TensorBoardCallback per task (`tensorboard/{task}`); config, summary and plots in `tensorboard/run`."
    package, extra, name = 'tensorboard', 'tensorboard', 'tensorboard'

    def start(self):
        from torch.utils.tensorboard import SummaryWriter
        self.log_dir = self.run_dir / 'tensorboard'
        self.writer = SummaryWriter(log_dir=str(self.log_dir / 'run'))
        self.writer.add_text('config', '```\n' + json.dumps(self.config, indent=2, default=str) + '\n```')
        self.writer.flush()

    def callbacks(self, task: str) -> list:
        from fastai.callback.tensorboard import TensorBoardCallback
        return [TensorBoardCallback(log_dir=str(self.log_dir / task), trace_model=False, log_preds=False)]

    def log_end(self, summary: dict, plots: list[Path]):
        import numpy as np
        from PIL import Image
        for k, v in self.numbers(summary).items(): self.writer.add_scalar(f'summary/{k}', v, 0)
        for p in plots:
            with Image.open(p) as im: self.writer.add_image(f'plots/{p.stem}', np.asarray(im.convert('RGB')), 0, dataformats='HWC')

    def close(self, ok: bool): self.writer.close()


class MLflowCallback(Callback):
    "Log a task's per-epoch losses and metrics to an MLflow run as `{task}/{name}` (off under lr_find)."
    order = CSVLogger.order + 1  # after the epoch's values are logged

    def __init__(self, client, run_id: str, task: str): self.client, self.run_id, self.task = client, run_id, task

    def before_fit(self): self.run = not hasattr(self.learn, 'lr_finder') and not hasattr(self, 'gather_preds')

    def after_epoch(self):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        ms = [Metric(f'{self.task}/{n}', float(v), now, self.epoch)
              for n, v in zip(self.recorder.metric_names[1:-1], self.recorder.log[1:-1]) if v is not None]
        self.client.log_batch(self.run_id, metrics=ms)


class MLflowTracker(Tracker):
    "One MLflow run per run folder in a local file store (`file:<run_dir>/mlruns`), experiment named after the recipe."
    package, extra, name = 'mlflow', 'mlflow', 'mlflow'

    def start(self):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        os.environ.setdefault('MLFLOW_ALLOW_FILE_STORE', 'true')  # MLflow 3 keeps the file store behind this switch
        self.client = MlflowClient(tracking_uri=(self.run_dir / 'mlruns').resolve().as_uri())
        recipe = (self.config.get('recipe') or {}).get('name') or self.run_dir.parent.name
        exp = self.client.get_experiment_by_name(recipe)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(recipe)
        self.run_id = self.client.create_run(exp_id, run_name=self.run_dir.name,
                                             tags={'run_dir': str(self.run_dir)}).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v[:6000]) for k, v in self.params().items()])

    def callbacks(self, task: str) -> list: return [MLflowCallback(self.client, self.run_id, task)]

    def log_end(self, summary: dict, plots: list[Path]):
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in self.numbers(summary).items()])
        for p in plots: self.client.log_artifact(self.run_id, str(p), 'plots')

    def close(self, ok: bool): self.client.set_terminated(self.run_id, 'FINISHED' if ok else 'FAILED')


class WandbCallback(Callback):
    """Log a task's per-epoch losses and metrics to the W&B run as `{task}/{name}`, stepped by `{task}/epoch` (off under
    lr_find). fastai's own WandbCallback is not used: its config logging fails on timm models (`vars()` of objects
    without `__dict__`) and it logs every task of a split recipe under the same names."""
    order = CSVLogger.order + 1  # after the epoch's values are logged

    def __init__(self, wb_run, task: str): self.wb_run, self.task = wb_run, task

    def before_fit(self):
        self.run = not hasattr(self.learn, 'lr_finder') and not hasattr(self, 'gather_preds')
        if self.run:
            self.wb_run.define_metric(f'{self.task}/epoch')
            self.wb_run.define_metric(f'{self.task}/*', step_metric=f'{self.task}/epoch')

    def after_epoch(self):
        vals = {f'{self.task}/{n}': float(v) for n, v in zip(self.recorder.metric_names[1:-1], self.recorder.log[1:-1])
                if v is not None}
        self.wb_run.log({f'{self.task}/epoch': self.epoch, **vals})


class WandbTracker(Tracker):
    "A W&B run (offline unless `WANDB_MODE` says otherwise) in `<run_dir>/wandb`; per-epoch values as `{task}/{name}`."
    package, extra, name = 'wandb', 'wandb', 'wandb'

    def start(self):
        import wandb
        recipe = (self.config.get('recipe') or {}).get('name') or self.run_dir.parent.name
        self.run = wandb.init(project=os.environ.get('WANDB_PROJECT', 'fastmask'), dir=str(self.run_dir),
                              mode=os.environ.get('WANDB_MODE', 'offline'), name=f'{recipe}/{self.run_dir.name}',
                              config=self.params(), reinit='create_new')

    def callbacks(self, task: str) -> list: return [WandbCallback(self.run, task)]

    def log_end(self, summary: dict, plots: list[Path]):
        import wandb
        self.run.summary.update(self.numbers(summary))
        if plots: self.run.log({f'plots/{p.stem}': wandb.Image(str(p)) for p in plots})

    def close(self, ok: bool): self.run.finish(exit_code=0 if ok else 1)


TRACKERS: dict[str, type[Tracker]] = {t.name: t for t in (TensorBoardTracker, MLflowTracker, WandbTracker)}


def check_tracker(name: str) -> type[Tracker]:
    "The tracker class for `name`; a FastmaskError if unknown, MissingExtraError if its package is not installed."
    if name not in TRACKERS: raise FastmaskError(f"unknown tracker '{name}' (one of {', '.join(TRACKERS)})")
    cls = TRACKERS[name]
    try: importlib.import_module(cls.package)
    except ImportError: raise MissingExtraError(cls.package, cls.extra, f'--track {name}') from None
    return cls


def tracker_callbacks(task: str) -> list:
    "Callbacks the active tracker adds to a task's fit (none when untracked)."
    t = _ACTIVE.get()
    return t.callbacks(task) if t is not None else []


@contextmanager
def tracking(name: str | None, run_dir):
    "Track the run in `run_dir` with tracker `name` while the block runs; None: untracked (also runs nested in it)."
    tracker = check_tracker(name)(run_dir) if name else None
    token, ok = _ACTIVE.set(tracker), False
    try:
        yield tracker
        ok = True
    finally:
        _ACTIVE.reset(token)
        if tracker is not None: tracker.finish(ok)
