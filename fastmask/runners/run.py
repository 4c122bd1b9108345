"""Run folders: start a run from its specification (`start_run`, `run_recipe`), continue an interrupted one
(`resume_run`), find a finished one to reuse (`find_run`), and sub-runs of composites (`sub_run`).

Every kind of run goes through `finish_run`, which looks the runner up by the recipe's kind in the runner
registry (loading the module that provides it), so `fastmask resume` can continue any kind of run. A runner is
`runner(spec, src, run_dir, *, splits=None, cbs=(), log=print) -> summary`: the run's `RunSpec`, its prepared
`DataSource` and its folder; nothing else reaches it. Composite runners keep their members' progress on disk: a
member folder with a finished summary is reused, an unfinished one continues from its per-epoch checkpoints.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from fastmask.callbacks.checkpoint import interruptible
from fastmask.callbacks.distributed import rank0_resume_dir, rank0_run_dir
from fastmask.callbacks.trackers import check_tracker, tracking
from fastmask.errors import FastmaskError
from fastmask.recipes.registry import Recipe, get_recipe
from fastmask.rundir import RunDir
from fastmask.runners.registry import get_runner
from fastmask.runspec import RunSpec
from fastmask.runtime import Runtime, default_runtime
from fastmask.sources.check import Prepared
from fastmask.sources.datasource import DataSource

__all__ = ['run_recipe', 'start_run', 'finish_run', 'resume_run', 'new_run_dir', 'is_finished', 'find_run', 'sub_run']


def new_run_dir(out, name: str) -> Path:
    "A fresh `out/<recipe>/<timestamp>` folder, as an absolute path (fastai joins `learn.path` with file names)."
    base = Path(out).resolve() / name
    stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
    d, i = base / stamp, 1
    while d.exists(): d, i = base / f'{stamp}-{i}', i + 1
    d.mkdir(parents=True)
    return d


def is_finished(run_dir) -> bool:
    "Whether a run folder's summary says it finished."
    return RunDir(run_dir).finished


def find_run(out, spec: RunSpec) -> Path | None:
    """The latest finished run under `out/<recipe name>/` whose specification matches `spec` for reuse (recipe
    settings, data and its fingerprint, skip-bad / label fixes / relabel file, weights: `RunSpec.reuse_key`)."""
    base = Path(out) / spec.recipe.name
    if not base.is_dir(): return None
    for d in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        rd = RunDir(d)
        if not rd.finished or not rd.config.is_file(): continue
        try: other = RunSpec.from_config(rd.read_config())
        except (KeyError, TypeError, ValueError): continue
        if other.same_run(spec): return d
    return None


def run_recipe(recipe: Recipe | str | RunSpec, data='demo', out='runs', *, weights=None, runtime: Runtime | None = None,
               num_workers: int | None = None, skip_bad: bool = False, fix_labels: bool = False, relabel=None,
               track: str | None = None, tags: dict | None = None, overrides: dict | None = None, cbs=(),
               on_start: Callable[[Path], None] | None = None, log=print) -> Path:
    """Python API: run a recipe (or a ready `RunSpec`) into a new run folder and return it; bad data is refused
    unless `skip_bad`; `summary.json` is written last. `data` may be a prepared DataSource (a composite's members)."""
    src = data if isinstance(data, DataSource) else None
    if not isinstance(recipe, RunSpec):
        r = get_recipe(recipe) if isinstance(recipe, str) else recipe
        rt = (runtime or default_runtime()).changed(num_workers=num_workers)
        recipe = RunSpec.build(r, data, out=out, skip_bad=skip_bad, fix_labels=fix_labels, relabel=relabel,
                               weights=weights, runtime=rt, track=track, tags=tags, overrides=overrides)
    return start_run(recipe, src, cbs=cbs, on_start=on_start, log=log)


def start_run(spec: RunSpec, src: DataSource | None = None, prep: Prepared | None = None, cbs=(),
              on_start: Callable[[Path], None] | None = None, log=print) -> Path:
    "Run a specification into a new run folder: prepare the data (unless `src` is given), write config.json, run."
    get_runner(spec.recipe.kind)  # an unknown kind fails before the run folder exists
    if spec.track: check_tracker(spec.track)  # an unknown tracker or a missing extra fails before the run folder exists
    if src is None: src, prep, data = spec.data.prepare(); spec = replace(spec, data=data)
    run_dir = rank0_run_dir(new_run_dir, spec.out, spec.recipe.name)
    RunDir(run_dir).write_config(spec.to_config(prep))
    if prep: prep.write(run_dir)
    if on_start is not None: on_start(run_dir)
    written = _files(run_dir)
    try:
        with interruptible(run_dir), tracking(spec.track, run_dir):
            return finish_run(spec, src, run_dir, cbs=cbs, log=log)
    except FastmaskError:   # a user mistake found before anything was trained (too few images for a batch, ...)
        if _files(run_dir) == written: shutil.rmtree(run_dir, ignore_errors=True)   # leaves no unfinished folder
        raise


def _files(d: Path) -> set:
    "Every file under a folder with its size: what a run has written so far."
    return {(str(p), p.stat().st_size) for p in d.rglob('*') if p.is_file()}


def finish_run(spec: RunSpec, src: DataSource, run_dir: Path, cbs=(), log=print) -> Path:
    "Run (or continue) a spec's runner in `run_dir`; write `summary.json` last."
    t0 = time.time()
    summary = get_runner(spec.recipe.kind)(spec, src, Path(run_dir), cbs=cbs, log=log)
    summary.update(recipe=spec.recipe.name, status='finished', wall_time_s=round(time.time() - t0, 1))
    RunDir(run_dir).write_summary(summary)
    return Path(run_dir)


def sub_run(spec: RunSpec, src: DataSource, sub: Path, config: dict | None = None, splits=None, cbs=(),
            log=print) -> dict:
    "A composite's member run in folder `sub`: reused when finished, else run (continuing from its checkpoints)."
    rd = RunDir(sub)
    if rd.finished: return rd.read_summary()
    rd.path.mkdir(parents=True, exist_ok=True)
    if not rd.config.is_file(): rd.write_config(spec.to_config(**(config or {})))
    s = get_runner(spec.recipe.kind)(spec, src, rd.path, splits=splits, cbs=cbs, log=log)
    s.update(recipe=spec.recipe.name, status='finished')
    rd.write_summary(s)
    return s


def _run_spec(run_dir: Path) -> RunSpec:
    "The specification of an unfinished run folder; one-line errors otherwise."
    rd = RunDir(run_dir)
    if not run_dir.is_dir(): raise FastmaskError(f'{run_dir}: run folder does not exist')
    if not rd.config.is_file(): raise FastmaskError(f'{run_dir}: not a run folder (no {rd.CONFIG})')
    if rd.summary.is_file(): raise FastmaskError(f'{run_dir}: run already finished ({rd.SUMMARY} exists)')
    try:
        cfg = rd.read_config()
        spec = RunSpec.from_config(cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise FastmaskError(f'{rd.config}: unreadable run config ({type(e).__name__}: {e})') from None
    if not cfg.get('out') and not (cfg.get('options') or {}).get('out'): spec = replace(spec, out=str(run_dir.parent.parent))
    return spec


def resume_run(run_dir, num_workers: int | None = None, runtime: Runtime | None = None, log=print) -> Path:
    """Continue an interrupted run folder of any kind from its last finished epoch (finished parts are kept), with
    the specification it recorded (`runtime` replaces its runtime, `num_workers` only the workers)."""
    run_dir = Path(run_dir).resolve()
    spec = _run_spec(run_dir)
    try: get_runner(spec.recipe.kind)
    except FastmaskError as e: raise FastmaskError(f'{run_dir}: {e}') from None
    spec = replace(spec, runtime=(runtime or spec.runtime).changed(num_workers=num_workers))
    src, prep, data = spec.data.prepare()
    if spec.data.relabel and data.relabel_sha256 != spec.data.relabel_sha256:
        raise FastmaskError(f"{run_dir}: the relabel file {spec.data.relabel} changed since the run started; start a new run instead")
    if spec.data.fingerprint and data.fingerprint != spec.data.fingerprint:
        raise FastmaskError(f"{run_dir}: the data in {spec.data.path} changed since the run started (fingerprint differs); "
                            f"start a new run instead")
    work = rank0_resume_dir(run_dir)   # under torchrun: rank 0 continues the folder, the others a scratch copy
    with interruptible(run_dir):
        finish_run(spec, src, work, log=log)
    return run_dir
