"""Run a recipe: build each task's Learner, fit it, and write the run folder."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from fastai.callback.mixup import MixUp
from fastai.callback.progress import CSVLogger
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.learner import Learner
from fastai.metrics import F1Score, accuracy
from fastai.torch_core import default_device, get_model, set_seed

from fastmask.callbacks.checkpoint import CheckpointCallback, load_finished
from fastmask.callbacks.cutmix import apply_cutmix
from fastmask.callbacks.distributed import distrib_fit, rank
from fastmask.callbacks.eta import ExpectedTime
from fastmask.callbacks.resize import apply_resize
from fastmask.callbacks.speed import accelerate
from fastmask.callbacks.swa import SWACallback
from fastmask.callbacks.trackers import tracker_callbacks
from fastmask.callbacks.transfer import BN_MODES, FrozenBN, FrozenStages
from fastmask.callbacks.validation import ValidateLast
from fastmask.data.augment import REPORT_MEAN, REPORT_STD
from fastmask.data.block import person_split, task_dls, task_labels
from fastmask.data.sampling import apply_sampling
from fastmask.errors import LayoutError, RecipeError
from fastmask.inference.calibration import apply_offsets, fit_offsets, shift_logits
from fastmask.inference.predict import combine_tasks, predict_paths, write_submission
from fastmask.inference.scoring import score_eval, scores
from fastmask.io import save_npy, write_csv
from fastmask.labels import task_names
from fastmask.losses import get_loss
from fastmask.models.backbones import Prelogits, body_head, create_model, freeze_stages, pretrained_stats
from fastmask.models.probe import feature_key, features, fit_head, set_head
from fastmask.optim import CONTIGUOUS_ONLY, get_opt
from fastmask.progress import learner_bars
from fastmask.recipes.registry import Recipe, resolve
from fastmask.rundir import RunDir, save_model
from fastmask.runners.registry import register_runner
from fastmask.runspec import RunSpec
from fastmask.runtime import Runtime, default_runtime, prepare_backends, resolved
from fastmask.runs import epochs_logged
from fastmask.sources.datasource import DataSource
from fastmask.sources.open import as_source

__all__ = ['TaskLearner', 'learner', 'build_learner', 'learner_stats', 'task_callbacks', 'fit_task', 'probe_head', 'calibrate', 'run_train', 'metric_name',
           'valid_frame']


def metric_name(monitor: str) -> tuple[str, Callable]:
    "fastai's recorder name and comparison for a recipe's `monitor`."
    if monitor == 'f1': return 'f1_score', np.greater
    if monitor == 'valid_loss': return 'valid_loss', np.less
    raise RecipeError(f"unknown monitor '{monitor}' (f1 or valid_loss)")


def learner_stats(r: Recipe) -> tuple[tuple, tuple]:
    "The normalisation (mean, std) of a recipe: the backbone's pretrained statistics, or the report's."
    if r.norm == 'pretrained': return pretrained_stats(r.arch)
    if r.norm == 'report': return REPORT_MEAN, REPORT_STD
    raise RecipeError(f"unknown norm '{r.norm}' (pretrained or report)")


class TaskLearner(Learner):
    "A fastai Learner of one task model of a recipe: it knows its recipe (as seen by the task), task, normalisation, weights and runtime."
    def __init__(self, dls, model, *, recipe: Recipe, task: str, stats, weights=None, runtime: Runtime | None = None, **kwargs):
        super().__init__(dls, model, **kwargs)
        self.recipe, self.task, self.stats, self.weights, self.runtime = recipe, task, stats, weights, runtime or default_runtime()


def build_learner(recipe: Recipe, data, task: str | None = None, weights=None, splits=None, cbs=(),
                  runtime: Runtime | None = None) -> TaskLearner:
    "The fastai Learner of one task of `recipe` on `data` with `runtime`'s speed settings, untrained (so `lr_find` works)."
    src, rt = as_source(data), runtime or default_runtime()
    task = task or recipe.tasks[0]
    if task not in src.tasks: raise RecipeError(f"the data has no labels for task '{task}' (it has {', '.join(src.tasks)})")
    r = recipe.for_task(task)
    if r.bn not in BN_MODES: raise RecipeError(f"unknown bn '{r.bn}' (one of {', '.join(BN_MODES)})")
    set_seed(r.seed, reproducible=rt.deterministic)
    stats = learner_stats(r)
    draw = r.balanced_mask if task == 'mask' else (r.draw_people and 'mask' in src.train.columns)  # 3 photos a person
    dls = task_dls(src.train, task, size=r.size, bs=r.bs, age_cut=r.age_cut, valid_pct=r.valid_pct,
                   split_seed=r.split_seed, balanced=draw, seed=r.seed, crop=r.crop,
                   num_workers=rt.num_workers, splits=splits, stats=stats, rrc_scale=r.rrc_scale, cutout=r.cutout,
                   cache=rt.cache, per_person=r.people_photos, camera=r.camera)
    n = len(task_names(task))
    timm_kw = {k: v for k, v in dict(drop_rate=r.drop_rate, drop_path_rate=r.drop_path_rate).items() if v}
    model = create_model(r.arch, n, pretrained=r.pretrained, weights=weights, head=r.head, **timm_kw)
    freeze_stages(model, r.frozen_stages)   # before the optimizer exists: the splitter leaves them out
    bn = [FrozenBN()] if r.bn == 'frozen' else [FrozenStages(r.frozen_stages)] if r.frozen_stages else []  # the body's covers the stages
    extra = bn + ([MixUp(r.mixup)] if r.mixup else [])
    learn = TaskLearner(dls, model, recipe=r, task=task, stats=stats, weights=weights, runtime=rt,
                        loss_func=get_loss(r.loss, n, **dict(r.loss_params)), opt_func=get_opt(r.opt),
                        metrics=[F1Score(average='macro'), accuracy], wd=r.wd, cbs=list(cbs) + extra, splitter=body_head,
                        train_bn=(r.bn == 'train'))
    prepare_backends(rt, dls.device)   # cudnn: deterministic when asked, else benchmark on a GPU
    apply_resize(apply_cutmix(apply_sampling(learn)))
    if len(learn.dls.train) == 0:   # every batch would be dropped: the epochs would train nothing and log NaN
        raise LayoutError(f"{src.root}: {learn.dls.train.n} training images an epoch for task '{task}', fewer than "
                          f"the batch size {r.bs}; use a smaller batch (--set bs=N) or more data")
    cl = False if r.opt in CONTIGUOUS_ONLY and rt.channels_last is None else None   # auto: never for those
    accelerate(learn, rt, channels_last=cl)  # autocast + channels-last where they pay
    return learn


def learner(name: str | Recipe = 'baseline_mobilenetv2', data='demo', task: str | None = None, quick: bool = False,
            weights=None, runtime: Runtime | None = None, **overrides) -> TaskLearner:
    "Python API: the recipe's Learner on `data` without training, e.g. for `learn.lr_find()`."
    return build_learner(resolve(name, quick=quick, **overrides), data, task, weights=weights, runtime=runtime)


def task_callbacks(r: Recipe, task: str, run_dir: Path, append: bool = False) -> list:
    "Callbacks of one task's fit: CSV log, validation in the last epochs, early stopping, best-by-metric checkpoint or SWA."
    name, comp = metric_name(r.monitor)
    cbs = [CSVLogger(fname=str(RunDir(run_dir).metrics(task)), append=append)]
    if r.valid_last: cbs.append(ValidateLast(r.valid_last))
    if r.patience is not None: cbs.append(EarlyStoppingCallback(monitor=name, comp=comp, patience=r.patience))
    if r.swa_start is not None:
        cbs.append(SWACallback(start_epoch=r.swa_start, swa_lr=r.swa_lr or r.lr))
    else:
        cbs.append(SaveModelCallback(monitor=name, comp=comp, fname=RunDir(run_dir).best(task).stem, with_opt=False))
    cbs += tracker_callbacks(task)  # --track: TensorBoard / MLflow / W&B logging of this fit
    return cbs


def _fit(learn: Learner, epochs: int, lr, r: Recipe, cbs: list, **kw) -> None:
    "One fit of the recipe's schedule (with a line of its expected time once its first batches have run)."
    cbs = list(cbs) + ([ExpectedTime(prefix=f'{learn.task}: ')] if not rank() else [])
    with learner_bars(learn), distrib_fit(learn):
        if r.schedule == 'one_cycle': learn.fit_one_cycle(epochs, lr, cbs=cbs, **kw)
        elif r.schedule == 'constant': learn.fit(epochs, lr, cbs=cbs)
        else: raise RecipeError(f"unknown schedule '{r.schedule}' (one_cycle or constant)")


def fit_task(learn: TaskLearner, run_dir: Path, cbs=()) -> TaskLearner:
    """Fit a task Learner with its recipe's schedule and save `model_{task}.pth` in the run folder.

    The recipe's `head_init='probe'` first sets the head from a linear probe on frozen features; `freeze_epochs`
    then trains the head alone (fastai's `fine_tune`: one-cycle with the body frozen), and `epochs` train the
    whole model with discriminative rates `slice(lr / 2 / lr_mult, lr / 2)` (`slice(lr / lr_mult, lr)` after a probe
    head alone). With `freeze_lr` the head phase is a plain one-cycle at that rate (a head trained to convergence,
    LP-FT) and the whole model then trains at `slice(lr / lr_mult, lr)`. Each phase has its own per-epoch
    checkpoint, so an interrupted run resumes inside either phase. `cbs`: extra callbacks of the main phase."""
    r, task, run_dir = learn.recipe, learn.task, Path(run_dir).resolve()
    rd = RunDir(run_dir)
    learn.path, learn.model_dir = run_dir, '.'
    if r.head_init == 'probe': probe_head(learn)
    log = str(rd.metrics(task))
    head_ck = rd.checkpoint(f'{task}.head')
    lr = slice(r.lr / r.lr_mult, r.lr) if r.head_init else r.lr   # a probe head: small body rates from the start
    if r.freeze_epochs:
        learn.freeze()
        head = [CSVLogger(fname=log), CheckpointCallback(head_ck)]
        if r.freeze_lr: _fit(learn, r.freeze_epochs, r.freeze_lr, r, head)
        else: _fit(learn, r.freeze_epochs, r.lr, r, head, pct_start=0.99)
        learn.unfreeze()
        lr = slice(r.lr / r.lr_mult, r.lr) if r.freeze_lr else slice(r.lr / 2 / r.lr_mult, r.lr / 2)  # fastai's fine_tune
    if r.epochs:
        main = task_callbacks(r, task, run_dir, append=bool(r.freeze_epochs)) + list(cbs)
        main.append(CheckpointCallback(rd.checkpoint(task)))  # resumes from it when it exists
        _fit(learn, r.epochs, lr, r, main)
    rd.best(task).unlink(missing_ok=True)
    cal = dict(calibration=calibrate(learn).tolist()) if task in r.calibrate else {}
    save_model(rd.model(task), learn.model, arch=r.arch, task=task, n_out=len(task_names(task)), size=r.size,
               crop=r.crop, age_cut=r.age_cut, head=r.head, stats=learn.stats, **cal)
    for ck in (rd.checkpoint(task), head_ck): ck.unlink(missing_ok=True)
    return learn


def calibrate(learn: TaskLearner) -> np.ndarray:
    """Fit the task's decision offsets to macro F1 on the validation people and add them to the classifier's bias;
    the validation probabilities with the offsets applied are kept as `learn.calibrated_valid` (no second pass)."""
    with learner_bars(learn):
        p, y = learn.get_preds(dl=learn.dls.valid, act=lambda x: torch.softmax(x.float(), -1))
    offsets = fit_offsets(p.numpy(), y.numpy())
    shift_logits(get_model(learn.model), offsets)
    learn.calibrated_valid = torch.from_numpy(apply_offsets(p.numpy(), offsets))
    return offsets


def probe_head(learn: TaskLearner) -> TaskLearner:
    "Set a Learner's linear head to a logistic regression on its frozen body's pooled features of the training images."
    r = learn.recipe
    if r.head != 'linear': raise RecipeError(f"head_init='probe' needs head='linear' (recipe {r.name} has '{r.head}')")
    df = learn.dls.train_ds.items   # the training rows (a DataFrame), every photo once
    if r.probe_photos and 'person' in df.columns:   # a start for fine-tuning: a few photos a person fit it as well
        df = df.sample(frac=1.0, random_state=r.seed).groupby('person').head(r.probe_photos).sort_index()
    y = task_labels(df, learn.task, r.age_cut)
    body = Prelogits(learn.model)
    key = feature_key(r.arch, learn.weights or ('pretrained' if r.pretrained else 'random'), r.size, r.crop,
                      learn.stats, df['path'])
    feats = features(body, df['path'], r.size, r.crop, learn.stats, key=key if r.pretrained else None, runtime=learn.runtime)
    set_head(learn.model, *fit_head(feats, y, len(task_names(learn.task)), seed=r.seed, groups=df.get('person')))
    return learn


def valid_frame(src: DataSource, idx: np.ndarray, probs: dict[str, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray | None]:
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
def run_train(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train every task model of the recipe, combine them, score the validation set, and predict the eval set."
    recipe, rd = spec.recipe, RunDir(run_dir)
    tasks = [t for t in recipe.tasks if t in src.tasks]
    if not tasks: raise RecipeError(f"recipe {recipe.name} trains {', '.join(recipe.tasks)} but the data only has "
                                    f"labels for {', '.join(src.tasks) or 'nothing'}")
    if splits is None: splits = person_split(src.train.reset_index(drop=True), recipe.valid_pct, recipe.split_seed)
    probs, epochs, speed = {}, {}, {}
    for task in tasks:
        learn = build_learner(recipe, src, task, weights=spec.weights, splits=splits, runtime=spec.runtime)
        learn = load_finished(learn, run_dir) if rd.model(task).is_file() else fit_task(learn, run_dir, cbs=cbs)
        p = getattr(learn, 'calibrated_valid', None)   # calibration's pass over the validation people, offsets applied
        if p is None:
            with learner_bars(learn):
                p, _ = learn.get_preds(dl=learn.dls.valid, act=lambda x: torch.softmax(x.float(), -1))
        probs[task], epochs[task], speed[task] = p.numpy(), epochs_logged(rd.metrics(task)), learn.speed
        save_npy(rd.task_probs(task), probs[task].astype(np.float32))  # per task, e.g. for `data noise`
    vf, p18 = valid_frame(src, splits[1], probs)
    write_csv(rd.valid_preds, vf)
    if p18 is not None: save_npy(rd.valid_probs, p18.astype(np.float32))
    summary = dict(epochs=epochs, n_train=int(len(splits[0])), n_valid=int(len(splits[1])), speed=speed, **scores(vf))
    if p18 is not None and src.eval is not None:
        ep = predict_paths(run_dir, src.eval['path'], runtime=spec.runtime)   # the run's own precision
        write_submission(rd.submission, src.eval, ep)
        save_npy(rd.eval_probs, ep.astype(np.float32))  # for k-fold / pseudo-label soft voting
        summary.update(score_eval(src, ep), eval_speed=resolved(spec.runtime, default_device()))
    return summary
