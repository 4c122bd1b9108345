"""Run folders: start a recipe's run (`run_recipe`), continue an interrupted one (`resume_run`), sub-runs of composites.

Every kind of run goes through `finish_run`, which looks the runner up by the recipe's kind in the runner
registry (loading the module that provides it), so `fastmask resume` can continue any kind of run: k-fold,
ensembles, comparisons, pseudo-labels, sweeps, face crops and external age models as well as plain training.
Composite runners keep their members' progress on disk: a member folder with a finished `summary.json` is
reused, an unfinished one continues from its per-epoch checkpoints.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Callable

from fastmask.callbacks.checkpoint import interruptible
from fastmask.callbacks.distributed import rank0_run_dir
from fastmask.callbacks.trackers import check_tracker, tracking
from fastmask.errors import FastmaskError
from fastmask.io import read_json, write_json
from fastmask.recipes.registry import Recipe, as_tuples, get_recipe
from fastmask.runinfo import environment
from fastmask.runners.registry import get_runner
from fastmask.settings import Speed, configure, current
from fastmask.sources.check import prepare_data
from fastmask.sources.datasource import DataSource

__all__ = ['run_recipe', 'finish_run', 'resume_run', 'new_run_dir', 'is_finished', 'find_run', 'sub_run']


def new_run_dir(out, name: str) -> Path:
    "A fresh `out/<recipe>/<timestamp>` folder, as an absolute path (fastai joins `learn.path` with file names)."
    base = Path(out).resolve() / name
    stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
    d, i = base / stamp, 1
    while d.exists(): d, i = base / f'{stamp}-{i}', i + 1
    d.mkdir(parents=True)
    return d


def is_finished(run_dir) -> bool:
    "Whether a run folder has a `summary.json` with status 'finished'."
    p = Path(run_dir) / 'summary.json'
    try: return p.is_file() and read_json(p).get('status') == 'finished'
    except ValueError: return False


def _same_data(cfg: dict, src: DataSource | None) -> bool:
    return src is None or Path(cfg.get('data', '')).resolve() == Path(src.root).resolve()


def find_run(out, recipe: Recipe, src: DataSource | None = None) -> Path | None:
    "The latest finished run of exactly `recipe` (on `src`'s data) under `out/<name>/`, or None."
    base = Path(out) / recipe.name
    if not base.is_dir(): return None
    for d in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        if not is_finished(d) or not (d / 'config.json').is_file(): continue
        cfg = read_json(d / 'config.json')
        try: same = Recipe.from_dict(cfg['recipe']).same_settings(recipe)   # reworded descriptions still match
        except (KeyError, TypeError): continue
        if same and _same_data(cfg, src): return d
    return None


def run_recipe(recipe: Recipe | str, data='demo', out='runs', weights=None, num_workers: int | None = None,
               overrides: dict | None = None, skip_bad: bool = False, fix_labels: bool = False, relabel=None, tags: dict | None = None, on_start: Callable[[Path], None] | None = None, **opts) -> Path:
    "Run a recipe into a new run folder and return it; bad data is refused unless `skip_bad`; `summary.json` is written last."
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    get_runner(r.kind)  # an unknown kind fails before the run folder exists
    track = opts.pop('track', None)
    if track: check_tracker(track)  # an unknown tracker or a missing extra fails before the run folder exists
    if isinstance(data, DataSource): src, prep = data, None
    else: src, prep = prepare_data(data, skip_bad=skip_bad, fix_labels=fix_labels, relabel=relabel)
    run_dir = rank0_run_dir(new_run_dir, out, r.name)
    write_json(run_dir / 'config.json', dict(recipe=r.to_dict(), overrides=overrides or {}, data=str(src.root),
                                             weights=str(weights) if weights else None, **environment(),
                                             **(prep.config() if prep else {}), **(dict(tags=tags) if tags else {}),
                                             options=dict(num_workers=num_workers, out=str(out), speed=asdict(current()))))
    if prep: prep.write(run_dir)
    if on_start is not None: on_start(run_dir)
    with interruptible(run_dir), tracking(track, run_dir):
        return finish_run(r, src, run_dir, weights=weights, num_workers=num_workers, out=out, overrides=overrides, **opts)


def finish_run(r: Recipe, src: DataSource, run_dir: Path, weights=None, num_workers: int | None = None, out='runs',
               overrides: dict | None = None, **opts) -> Path:
    "Run (or continue) a recipe's runner in `run_dir`; write `summary.json` last."
    t0 = time.time()
    summary = get_runner(r.kind)(r, src, Path(run_dir), weights=weights, num_workers=num_workers, out=Path(out),
                                 overrides=overrides or {}, **opts)
    summary.update(recipe=r.name, status='finished', wall_time_s=round(time.time() - t0, 1))
    write_json(Path(run_dir) / 'summary.json', summary)
    return Path(run_dir)


def sub_run(r: Recipe, src: DataSource, sub: Path, config: dict | None = None, **opts) -> dict:
    "A composite's member run in folder `sub`: reused when finished, else run (continuing from its checkpoints)."
    sub = Path(sub)
    if is_finished(sub): return read_json(sub / 'summary.json')
    sub.mkdir(parents=True, exist_ok=True)
    if not (sub / 'config.json').is_file():
        write_json(sub / 'config.json', dict(recipe=r.to_dict(), data=str(src.root), **(config or {}), **environment()))
    s = get_runner(r.kind)(r, src, sub, **opts)
    s.update(recipe=r.name, status='finished')
    write_json(sub / 'summary.json', s)
    return s


def _run_config(run_dir: Path) -> tuple[dict, Recipe]:
    "The config.json of an unfinished run folder and its recipe; one-line errors otherwise."
    cfg_file = run_dir / 'config.json'
    if not run_dir.is_dir(): raise FastmaskError(f'{run_dir}: run folder does not exist')
    if not cfg_file.is_file(): raise FastmaskError(f'{run_dir}: not a run folder (no config.json)')
    if (run_dir / 'summary.json').is_file(): raise FastmaskError(f'{run_dir}: run already finished (summary.json exists)')
    try:
        cfg = read_json(cfg_file)
        return cfg, Recipe.from_dict(cfg['recipe'])
    except (ValueError, KeyError, TypeError) as e:
        raise FastmaskError(f'{cfg_file}: unreadable run config ({type(e).__name__}: {e})') from None


def resume_run(run_dir, num_workers: int | None = None) -> Path:
    "Continue an interrupted run folder of any kind from its last finished epoch (finished parts are kept)."
    run_dir = Path(run_dir).resolve()
    cfg, r = _run_config(run_dir)
    try: get_runner(r.kind)
    except FastmaskError as e: raise FastmaskError(f'{run_dir}: {e}') from None
    opts = cfg.get('options', {})
    rel = cfg.get('relabel') or {}
    src, prep = prepare_data(cfg['data'], skip_bad=cfg.get('skip_bad', False), fix_labels=cfg.get('fix_labels', False),
                             relabel=rel.get('file'))
    if rel and prep.relabel['sha256'] != rel.get('sha256'):
        raise FastmaskError(f"{run_dir}: the relabel file {rel['file']} changed since the run started; start a new run instead")
    if cfg.get('data_fingerprint') and prep.fingerprint != cfg['data_fingerprint']:
        raise FastmaskError(f"{run_dir}: the data in {cfg['data']} changed since the run started (fingerprint differs); "
                            f"start a new run instead")
    nw = opts.get('num_workers') if num_workers is None else num_workers
    configure(**{k: v for k, v in opts.get('speed', {}).items() if k in Speed.__dataclass_fields__})
    with interruptible(run_dir):
        return finish_run(r, src, run_dir, weights=cfg.get('weights'), num_workers=nw,
                          out=Path(opts.get('out', run_dir.parent.parent)),
                          overrides={k: as_tuples(v) for k, v in cfg.get('overrides', {}).items()})
