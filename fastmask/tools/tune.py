"""`fastmask tune`: an Optuna study over a recipe's fields; every trial is an ordinary run folder.

Trials are `train.run_recipe` runs tagged in config.json with `tags.tune = {study, trial, storage, params}`, so
`runs`, `report` and `ensemble` work on them; the trial's user attribute `run_dir` points back at the folder.
Studies live in any storage Optuna supports: by default the SQLite file `OUT/tune/STUDY.db`; several processes or
machines share one study by passing the same `--storage URL --study-name NAME` (`--study-name` joins the study or
creates it; `--resume` only joins and fails if it does not exist). A study records its recipe, metric and search
space, and a worker started with other settings is refused.
"""
from __future__ import annotations

import json
import math
import random
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from fastai.callback.core import Callback, CancelFitException
from fastai.callback.progress import CSVLogger, ProgressCallback
from fastai.callback.tracker import EarlyStoppingCallback

from fastmask.errors import FastmaskError
from fastmask.io import read_json
from fastmask.callbacks.trackers import flatten
from fastmask.recipes import Recipe, resolve
from fastmask.rundir import RunDir
from fastmask.runners.run import start_run
from fastmask.runspec import RunSpec
from fastmask.tools.tunespace import apply_params, default_space, load_space, need_optuna, parse_space, space_json, suggest

__all__ = ['TuneError', 'TuneInterrupted', 'METRICS', 'PRUNERS', 'PruningCallback', 'resolve_metric', 'study_storage',
           'safe_url', 'open_storage', 'open_study', 'trial_run', 'tune']

METRICS = ('valid_f1', 'valid_f1_mask', 'valid_f1_gender', 'valid_f1_age')
PRUNERS = ('median', 'halving', 'none')


class TuneError(FastmaskError, ValueError):
    "A bad `fastmask tune` option or study."


class TuneInterrupted(KeyboardInterrupt):
    "Ctrl-C during a study; the message names the command that continues it."


class PruningCallback(Callback):
    """Report each epoch's validation macro F1 (`f1_score`) to an Optuna trial; stop the run when it should be pruned.

    Steps: a run fits one model ('all') or one per task in order (again per fold or pseudo-label round). A fit
    reports at `offset + epoch`, `offset` being the planned epochs (`n_epoch`) of the fits reported before it: for a
    split recipe `task_index * epochs + epoch`. Steps never repeat, and a step means the same task's same epoch in
    every trial (planned, not trained, epochs: early stopping does not shift later tasks; a space that searches
    `epochs` does shift them, so prune such split-recipe studies on one task's metric). With `task` only that
    task's fits report (a `valid_f1_mask` study of a split recipe prunes on the mask model; steps are its epochs).
    Pruning cancels the fit, so fastai's loggers and trackers close as usual, then `after_fit` raises
    `optuna.TrialPruned`: the run folder stays unfinished (no summary.json) and the study goes on."""
    # after the Recorder (it reads the epoch's metrics) and after the CSV log, progress bar and trackers, whose
    # after_fit must close the log and bar of a pruned fit before ours raises
    order = max(CSVLogger.order, ProgressCallback.order, EarlyStoppingCallback.order) + 1

    def __init__(self, trial, task: str | None = None, metric: str = 'f1_score'):
        self.trial, self.task, self.metric, self.offset, self.pruned = trial, task, metric, 0, False

    def before_fit(self):
        self.run = not hasattr(self, 'lr_finder') and not hasattr(self, 'gather_preds')
        if self.task is not None and getattr(self.learn, 'task', None) != self.task: self.run = False
        self.pruned = False
        if self.run: self.idx = list(self.recorder.metric_names[1:]).index(self.metric)

    def after_epoch(self):
        v = self.recorder.values[-1][self.idx] if self.recorder.values else None
        if v is None or math.isnan(v): return      # an epoch without validation (`valid_last`) reports nothing
        self.trial.report(float(v), self.offset + self.epoch)
        if self.trial.should_prune():
            self.pruned = True
            raise CancelFitException

    def after_fit(self):
        step, self.offset = self.offset + self.epoch, self.offset + self.n_epoch
        if self.pruned: raise need_optuna().TrialPruned(f'pruned at step {step} ({self.metric})')


def _trained(recipe: Recipe, data_tasks) -> list[str]:
    "The tasks whose models a run of `recipe` fits on data with labels for `data_tasks`."
    return [t for t in recipe.tasks if t in data_tasks]


def resolve_metric(recipe: Recipe, data_tasks, metric: str | None = None) -> tuple[str, str | None]:
    "The summary key to maximise (default `valid_f1`, else the only task F1) and the task whose fits report (None: all)."
    trained = _trained(recipe, data_tasks)
    scored = set(trained) | ({'age'} if recipe.age_model else set())  # external_age: an estimator's age head
    full = 'all' in scored or {'mask', 'gender', 'age'} <= scored
    have = list(METRICS) if full else [f'valid_f1_{t}' for t in ('mask', 'gender') if t in scored]
    what = f"recipe {recipe.name} trains {', '.join(trained) or 'nothing'} on this data"
    if metric is None:
        if not have: raise TuneError(f'--metric: {what}: no validation F1 to maximise')
        if 'valid_f1' not in have and len(have) > 1:
            raise TuneError(f"--metric: {what}, no 18-class valid_f1: choose one of {', '.join(have)}")
        metric = have[0]
    elif metric not in METRICS: raise TuneError(f"--metric {metric}: unknown (one of {', '.join(METRICS)})")
    elif metric not in have: raise TuneError(f"--metric {metric}: {what}: choose {'one of ' if len(have) > 1 else ''}{', '.join(have) or 'another recipe'}")
    task = metric[len('valid_f1_'):] if metric != 'valid_f1' else None
    return metric, task if task in trained else None


def study_storage(storage: str | None, out, study_name: str) -> str:
    "The storage URL: `storage`, or the SQLite file `OUT/tune/STUDY.db`."
    return storage or f"sqlite:///{Path(out).resolve() / 'tune' / f'{study_name}.db'}"


def safe_url(url: str) -> str:
    "A storage URL without its password."
    from sqlalchemy.engine import make_url
    try: return make_url(url).render_as_string(hide_password=True)
    except Exception: return url.split('@')[-1] if '@' in url else url


def open_storage(url: str, must_exist: bool = False):
    "Optuna's RDBStorage for a database URL (SQLite waits for locks; heartbeats fail trials of dead workers)."
    optuna, safe = need_optuna(), safe_url(url)
    if '://' not in url: raise TuneError(f'--storage {url}: not a database URL (e.g. sqlite:///tune.db, postgresql://user:pass@host/db)')
    kw = {}
    if url.startswith('sqlite'):
        from sqlalchemy.engine import make_url
        db = make_url(url).database
        if db and db != ':memory:':
            if must_exist and not Path(db).is_file(): raise TuneError(f'--storage {safe}: {db} does not exist')
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kw = dict(engine_kwargs=dict(connect_args=dict(timeout=120)))
    from sqlalchemy.exc import DBAPIError
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180, **kw)
        except DBAPIError as e:  # workers starting together race to create the tables (optuna#1092): try again
            if attempt == 5: raise TuneError(f"--storage {safe}: {' '.join(str(e).split())[:300]}") from None
            time.sleep(0.2 + random.random())
        except Exception as e: raise TuneError(f"--storage {safe}: {' '.join(str(e).split())[:300]}") from None


def open_study(storage: str, study_name: str, *, resume: bool = False, create: bool = True, pruner=None,
               sampler=None, settings: dict | None = None):
    "Join (or, if `create` and not `resume`, create) a study; `settings` must match the ones it was created with."
    optuna, st = need_optuna(), open_storage(storage, must_exist=resume or not create)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # `tune` logs one line per trial itself
    names = optuna.study.get_all_study_names(st)
    if study_name not in names and (resume or not create):
        raise TuneError(f"--study-name {study_name}: no such study in {safe_url(storage)} (it has: {', '.join(names) or 'none'})")
    study = optuna.create_study(storage=st, study_name=study_name, direction='maximize', pruner=pruner, sampler=sampler,
                                load_if_exists=True)
    if settings is not None:
        settings, old = json.loads(json.dumps(settings)), study.user_attrs.get('fastmask')  # as stored: tuples are lists
        if old is None: study.set_user_attr('fastmask', settings)
        elif old != settings:
            a, b = flatten(old), flatten(settings)
            diff = next((k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), 'setting')
            raise TuneError(f"--study-name {study_name}: the study in {safe_url(storage)} was started with another {diff} "
                            f"({a.get(diff)!r}, not {b.get(diff)!r}); use the same recipe, options and space, or another --study-name")
    return study


def _pruner(pruner):
    "An Optuna pruner from its name (median, halving, none) or as given."
    optuna = need_optuna()
    if not isinstance(pruner, str): return pruner
    if pruner not in PRUNERS: raise TuneError(f"--pruner {pruner}: unknown (one of {', '.join(PRUNERS)})")
    P = optuna.pruners
    return dict(median=P.MedianPruner, halving=P.SuccessiveHalvingPruner, none=P.NopPruner)[pruner]()


def trial_run(out, recipe_name: str, study_name: str, number: int) -> Path | None:
    "The run folder tagged with a study's trial number under `out/recipe_name`, if any."
    base = Path(out).resolve() / recipe_name
    dirs = [RunDir(d) for d in base.iterdir() if RunDir(d).config.is_file()] if base.is_dir() else []
    for rd in sorted(dirs, key=lambda rd: -rd.config.stat().st_mtime):
        t = (rd.config_or_empty().get('tags') or {}).get('tune') or {}
        if t.get('study') == study_name and t.get('trial') == number: return rd.path
    return None


@contextmanager
def _continue_message(cmd: str):
    "Turn Ctrl-C into `TuneInterrupted` naming the command that continues the study."
    try: yield
    except KeyboardInterrupt: raise TuneInterrupted(f"interrupted; the study keeps its finished trials: continue with '{cmd}'") from None


def tune(recipe: str | Recipe | RunSpec, data='demo', out='runs', *, trials: int = 20, timeout: float | None = None,
         space=None, metric: str | None = None, pruner='median', storage: str | None = None,
         study_name: str | None = None, resume: bool = False, sampler=None, quick: bool = False,
         overrides: dict | None = None, log=print, **run_options):
    """Run `trials` trials (this process's share of the study) of an Optuna study over `recipe`; return the study.

    `recipe`: a base `RunSpec` (what the command line fixed: recipe, data and its preparation, weights, runtime),
    or a recipe name with `data`, `out`, `quick`, `overrides` (recipe changes such as `dict(epochs=2)`) and the
    `RunSpec.build` options in `run_options`. `space`: a JSON/YAML file, a `{key: spec}` dict, or None for
    `tunespace.default_space` (fields the overrides name stay fixed). `metric`: a summary key to maximise (see
    `resolve_metric`). `pruner`: median, halving, none or an Optuna pruner."""
    need_optuna()  # a missing extra fails first, in one line
    if trials < 1: raise TuneError(f'--trials {trials}: must be at least 1')
    if resume and not study_name: raise TuneError('--resume: needs --study-name (the study to continue)')
    if not isinstance(recipe, RunSpec):
        changes = {k: v for k, v in (overrides or {}).items() if v is not None}
        recipe = RunSpec.build(resolve(recipe, quick=quick, **changes), data, out=out,
                               overrides=dict(changes, **({'quick': True} if quick else {})), **run_options)
    spec = recipe
    base, out = spec.recipe, spec.out
    changes = {k: v for k, v in spec.overrides.items() if k != 'quick'}
    if base.members or base.age_cuts:
        raise TuneError(f"recipe {base.name}: a '{base.kind}' recipe combines or sweeps other runs; tune its base recipe instead")
    src, prep, prepared = spec.data.prepare()     # checked once; every trial trains on the same prepared data
    spec = replace(spec, data=prepared)
    metric, task = resolve_metric(base, src.tasks, metric)
    if space is None: space = default_space(base, fixed=changes)
    elif isinstance(space, dict): space = parse_space(space, base)
    else: space = load_space(space, base)
    study_name = study_name or f"{base.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    url = study_storage(storage, out, study_name)
    settings = dict(recipe=base.to_dict(), metric=metric, space=space_json(space))
    study = open_study(url, study_name, resume=resume, pruner=_pruner(pruner), sampler=sampler, settings=settings)
    log(f"study {study_name} in {safe_url(url)}: maximise {metric} over {', '.join(space)} "
        f"({len(study.trials)} trial(s) so far)")

    def objective(trial):
        params = {k: suggest(trial, k, d) for k, d in space.items()}
        r = apply_params(base, params)
        tags = dict(tune=dict(study=study_name, trial=trial.number, storage=safe_url(url), params=params))
        run_dir = None
        try:
            run_dir = start_run(spec.with_recipe(r, tags=tags), src, prep, cbs=(PruningCallback(trial, task),))
        finally:
            run_dir = run_dir or trial_run(out, r.name, study_name, trial.number)
            if run_dir is not None: trial.set_user_attr('run_dir', str(run_dir))
        value = RunDir(run_dir).read_summary().get(metric)
        if value is None: raise TuneError(f'{run_dir}: the run summary has no {metric}')
        return float(value)

    def report(study, t):
        v = f'{metric} {t.value:.4f}' if t.state.name == 'COMPLETE' else t.state.name.lower()  # a pruned trial's value: its last report
        log(f"trial {t.number}: {v}  {', '.join(f'{k}={_fmt(x)}' for k, x in t.params.items())}  {t.user_attrs.get('run_dir', '')}")

    cmd = f"fastmask tune {base.name} --storage {safe_url(url)} --study-name {study_name} --resume (and the same options)"
    with _continue_message(cmd):
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=[report], gc_after_trial=True)
    return study


def _fmt(v) -> str:
    "A parameter value, short."
    return f'{v:.3g}' if isinstance(v, float) else str(v)
