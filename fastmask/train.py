"""Run a recipe: build each task's Learner, fit it, and write the run folder."""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.metrics import F1Score, accuracy
from fastai.torch_core import set_seed

from .accel import accelerate
from .check import prepare_data
from .checkpoint import CheckpointCallback, checkpoint_path, interruptible, load_finished
from .cutmix import apply_cutmix
from .data import person_split, task_dls
from .distributed import distrib_fit, rank0_run_dir
from .errors import RecipeError
from .io import save_npy, save_torch, write_csv, write_json
from .labels import task_names
from .layout import DataSource, open_data
from .losses import get_loss
from .models import create_model
from .optim import get_opt
from .predict import combine_tasks, predict_paths, scores, write_submission
from .recipes import Recipe, get_recipe, resolve
from .runinfo import environment
from .runs import epochs_logged
from .sampling import apply_sampling
from .swa import SWACallback
from .trackers import check_tracker, tracker_callbacks, tracking

__all__ = ['learner', 'build_learner', 'fit_task', 'run_recipe', 'run_train', 'RUNNERS', 'register_runner',
           'new_run_dir', 'metric_name', 'finish_run']

RUNNERS: dict[str, Callable] = {}


def register_runner(kind: str):
    "Register `f(recipe, data, run_dir, **opts) -> summary dict` as the runner of recipes of `kind`."
    def deco(f):
        RUNNERS[kind] = f
        return f
    return deco


def metric_name(monitor: str) -> tuple[str, Callable]:
    "fastai's recorder name and comparison for a recipe's `monitor`."
    if monitor == 'f1': return 'f1_score', np.greater
    if monitor == 'valid_loss': return 'valid_loss', np.less
    raise RecipeError(f"unknown monitor '{monitor}' (f1 or valid_loss)")


def _as_source(data) -> DataSource:
    return data if isinstance(data, DataSource) else open_data(data)


def build_learner(recipe: Recipe, data, task: str | None = None, weights=None, splits=None, cbs=(),
                  num_workers: int | None = None) -> Learner:
    "The fastai Learner of one task of `recipe` on `data`, untrained (so `lr_find` works)."
    src = _as_source(data)
    task = task or recipe.tasks[0]
    if task not in src.tasks: raise RecipeError(f"the data has no labels for task '{task}' (it has {', '.join(src.tasks)})")
    r = recipe.for_task(task)
    set_seed(r.seed, reproducible=True)
    dls = task_dls(src.train, task, size=r.size, bs=r.bs, age_cut=r.age_cut, valid_pct=r.valid_pct,
                   split_seed=r.split_seed, balanced=(task == 'mask' and r.balanced_mask), seed=r.seed, crop=r.crop,
                   num_workers=num_workers, splits=splits)
    n = len(task_names(task))
    model = create_model(r.arch, n, pretrained=r.pretrained, weights=weights)
    learn = Learner(dls, model, loss_func=get_loss(r.loss, n, **dict(r.loss_params)), opt_func=get_opt(r.opt),
                    metrics=[F1Score(average='macro'), accuracy], wd=r.wd, cbs=list(cbs))
    learn.recipe, learn.task = r, task
    apply_cutmix(apply_sampling(learn))
    accelerate(learn)  # speed: bf16/fp16 + channels-last on CUDA, opt-in compile
    return learn


def learner(name: str | Recipe = 'baseline_mobilenetv2', data='demo', task: str | None = None, quick: bool = False,
            weights=None, **overrides) -> Learner:
    "Python API: the recipe's Learner on `data` without training, e.g. for `learn.lr_find()`."
    return build_learner(resolve(name, quick=quick, **overrides), data, task, weights=weights)


def task_callbacks(r: Recipe, task: str, run_dir: Path) -> list:
    "Callbacks of one task's fit: CSV log, early stopping, best-by-metric checkpoint or SWA."
    from fastai.callback.progress import CSVLogger
    name, comp = metric_name(r.monitor)
    cbs = [CSVLogger(fname=str(run_dir / f'metrics_{task}.csv'))]
    if r.patience is not None: cbs.append(EarlyStoppingCallback(monitor=name, comp=comp, patience=r.patience))
    if r.swa_start is not None:
        cbs.append(SWACallback(start_epoch=r.swa_start, swa_lr=r.swa_lr or r.lr))
    else:
        cbs.append(SaveModelCallback(monitor=name, comp=comp, fname=f'.best_{task}', with_opt=False))
    cbs += tracker_callbacks(task)  # --track: TensorBoard / MLflow / W&B logging of this fit
    return cbs


def fit_task(learn: Learner, run_dir: Path) -> Learner:
    "Fit a task Learner with its recipe's schedule and save `model_{task}.pth` in the run folder."
    r, task, run_dir = learn.recipe, learn.task, Path(run_dir).resolve()
    learn.path, learn.model_dir = run_dir, '.'
    cbs = task_callbacks(r, task, run_dir)
    cbs.append(CheckpointCallback(checkpoint_path(run_dir, task)))  # resumes from it when it exists
    with (nullcontext() if sys.stdout.isatty() else learn.no_bar()), distrib_fit(learn):
        if r.schedule == 'one_cycle': learn.fit_one_cycle(r.epochs, r.lr, cbs=cbs)
        elif r.schedule == 'constant': learn.fit(r.epochs, r.lr, cbs=cbs)
        else: raise RecipeError(f"unknown schedule '{r.schedule}' (one_cycle or constant)")
    (run_dir / f'.best_{task}.pth').unlink(missing_ok=True)
    save_torch(run_dir / f'model_{task}.pth', dict(arch=r.arch, task=task, n_out=len(task_names(task)), size=r.size,
                                                   crop=r.crop, age_cut=r.age_cut, state_dict=learn.model.state_dict()))
    checkpoint_path(run_dir, task).unlink(missing_ok=True)
    return learn


def new_run_dir(out, name: str) -> Path:
    "A fresh `out/<recipe>/<timestamp>` folder, as an absolute path (fastai joins `learn.path` with file names)."
    base = Path(out).resolve() / name
    stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
    d, i = base / stamp, 1
    while d.exists(): d, i = base / f'{stamp}-{i}', i + 1
    d.mkdir(parents=True)
    return d


def _valid_frame(src: DataSource, idx: np.ndarray, probs: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray | None]:
    "Validation rows with predictions per task, and the 18-class probabilities when all tasks are there."
    v = src.train.iloc[idx].reset_index(drop=True)
    cols = [c for c in ('path', 'person', 'mask', 'gender', 'age', 'label') if c in v.columns]
    out = v[cols].copy()
    p18 = probs.get('all')
    if p18 is None and all(t in probs for t in ('mask', 'gender', 'age')):
        p18 = combine_tasks(probs['mask'], probs['gender'], probs['age'])
    for t, p in probs.items(): out[f'pred_{t}'] = p.argmax(1)
    if p18 is not None: out['pred'] = p18.argmax(1)
    return out, p18


@register_runner('train')
def run_train(recipe: Recipe, data, run_dir: Path, weights=None, num_workers: int | None = None, splits=None, **_) -> dict:
    "Train every task model of the recipe, combine them, score the validation set, and predict the eval set."
    src = _as_source(data)
    tasks = [t for t in recipe.tasks if t in src.tasks]
    if not tasks: raise RecipeError(f"recipe {recipe.name} trains {', '.join(recipe.tasks)} but the data only has "
                                    f"labels for {', '.join(src.tasks) or 'nothing'}")
    if splits is None: splits = person_split(src.train.reset_index(drop=True), recipe.valid_pct, recipe.split_seed)
    probs, epochs, models = {}, {}, {}
    for task in tasks:
        learn = build_learner(recipe, src, task, weights=weights, splits=splits, num_workers=num_workers)
        learn = load_finished(learn, run_dir) if (run_dir / f'model_{task}.pth').is_file() else fit_task(learn, run_dir)
        with (nullcontext() if sys.stdout.isatty() else learn.no_bar()):
            p, _ = learn.get_preds(dl=learn.dls.valid, act=lambda x: torch.softmax(x.float(), -1))
        probs[task], epochs[task], models[task] = p.numpy(), epochs_logged(run_dir / f'metrics_{task}.csv'), learn
    vf, p18 = _valid_frame(src, splits[1], probs)
    write_csv(run_dir / 'valid_preds.csv', vf)
    if p18 is not None: save_npy(run_dir / 'valid_probs.npy', p18.astype(np.float32))
    summary = dict(epochs=epochs, n_train=int(len(splits[0])), n_valid=int(len(splits[1])), **scores(vf))
    if p18 is not None and src.eval is not None:
        ep = predict_paths(run_dir, src.eval['path'], num_workers=num_workers)
        write_submission(run_dir / 'submission.csv', src.eval, ep)
        save_npy(run_dir / 'eval_probs.npy', ep.astype(np.float32))  # for k-fold / pseudo-label soft voting
        if src.truth is not None:
            summary.update({f'eval_{k[6:]}': v for k, v in scores(pd.DataFrame(
                {'label': src.truth.set_index('ImageID').loc[src.eval['ImageID'], 'ans'].to_numpy(),
                 'pred': ep.argmax(1)})).items()})
    return summary


def run_recipe(recipe: Recipe | str, data='demo', out='runs', weights=None, num_workers: int | None = None,
               overrides: dict | None = None, skip_bad: bool = False, fix_labels: bool = False, **opts) -> Path:
    "Run a recipe into a new run folder and return it; bad data is refused unless `skip_bad`; `summary.json` is written last."
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if r.kind not in RUNNERS: raise RecipeError(f"recipe {r.name} needs runner '{r.kind}', which is not available")
    track = opts.pop('track', None)
    if track: check_tracker(track)  # an unknown tracker or a missing extra fails before the run folder exists
    src, prep = (data, None) if isinstance(data, DataSource) else prepare_data(data, skip_bad=skip_bad, fix_labels=fix_labels)
    run_dir = rank0_run_dir(new_run_dir, out, r.name)
    write_json(run_dir / 'config.json', dict(recipe=r.to_dict(), overrides=overrides or {}, data=str(src.root),
                                             weights=str(weights) if weights else None, **environment(),
                                             **(prep.config() if prep else {}),
                                             options=dict(num_workers=num_workers, out=str(out), speed=_speed())))
    if prep: prep.write(run_dir)
    with interruptible(run_dir), tracking(track, run_dir):
        return finish_run(r, src, run_dir, weights=weights, num_workers=num_workers, out=out, overrides=overrides, **opts)


def _speed() -> dict:
    "The process-wide speed settings (accel.py), so that `fastmask resume` continues with the same ones."
    from dataclasses import asdict
    from .accel import SETTINGS
    return asdict(SETTINGS)


def finish_run(r: Recipe, src: DataSource, run_dir: Path, weights=None, num_workers: int | None = None, out='runs',
               overrides: dict | None = None, **opts) -> Path:
    "Run (or continue, see `checkpoint.resume_run`) a recipe's runner in `run_dir`; write `summary.json` last."
    t0 = time.time()
    summary = RUNNERS[r.kind](r, src, run_dir, weights=weights, num_workers=num_workers, out=Path(out),
                              overrides=overrides or {}, **opts)
    summary.update(recipe=r.name, status='finished', wall_time_s=round(time.time() - t0, 1))
    write_json(run_dir / 'summary.json', summary)
    return run_dir
