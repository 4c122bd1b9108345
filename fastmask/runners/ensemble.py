"""Soft-voting ensembles of finished runs, and the 'ensemble' runner that reuses or trains its members."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.io import read_json, write_csv, write_json
from fastmask.sources.datasource import DataSource
from fastmask.sources.open import open_data
from fastmask.inference.predict import predict_paths, soft_vote, write_submission
from fastmask.inference.scoring import score_eval, scores
from fastmask.recipes.registry import Recipe
from fastmask.recipes.spec import resolve_spec
from fastmask.runners.registry import register_runner
from fastmask.runners.run import find_run, is_finished, resume_run, run_recipe

__all__ = ['EnsembleError', 'member_runs', 'member_valid', 'check_aligned',
           'ensemble_runs', 'ensemble_report', 'run_ensemble']


class EnsembleError(FastmaskError, ValueError):
    "Member runs that cannot be combined (unfinished, no 18-class predictions, different validation rows)."


def member_runs(recipe: Recipe, src: DataSource, out, overrides: dict | None = None, log=print, run_dir=None,
                **opts) -> dict[str, tuple[Path, bool]]:
    """Each member of `recipe`: (run folder, reused?) -- the latest matching finished run under `out`, else a new run.

    With `run_dir`, the member folders started are recorded in `run_dir/members.json` as they start, so that a
    resumed ensemble continues an interrupted member from its checkpoints instead of starting it again."""
    overrides = {k: v for k, v in (overrides or {}).items()}
    if not recipe.members: raise FastmaskError(f'recipe {recipe.name} lists no members')
    book = Path(run_dir) / 'members.json' if run_dir is not None else None
    started = read_json(book) if book is not None and book.is_file() else {}
    def record(name, d):
        if book is None: return
        started[name] = str(d)
        write_json(book, started)
    res = {}
    for name in recipe.members:
        m = resolve_spec(name, **overrides)   # a member may be a variant: `cpu_split_lite0[seed=1]`
        d = find_run(out, m, src)
        if d is not None:
            log(f'{recipe.name}: reusing {name} run {d}')
            res[name] = (d, True)
            record(name, d)
        elif name in started and is_finished(started[name]):     # finished, though no longer `find_run`'s match
            res[name] = (Path(started[name]), True)
        elif name in started and Path(started[name], 'config.json').is_file():
            log(f'{recipe.name}: continuing {name} run {started[name]}')
            res[name] = (resume_run(started[name], num_workers=opts.get('num_workers')), False)
        else:
            log(f'{recipe.name}: training {name}')
            res[name] = (run_recipe(m, src, out, overrides=overrides, on_start=lambda d, n=name: record(n, d), **opts), False)
    return res


def member_valid(run_dir) -> tuple[pd.DataFrame, np.ndarray]:
    "A finished run's validation rows (`valid_preds.csv`) and 18-class probabilities (`valid_probs.npy`)."
    run_dir = Path(run_dir)
    csv, npy = run_dir / 'valid_preds.csv', run_dir / 'valid_probs.npy'
    if not is_finished(run_dir): raise EnsembleError(f'{run_dir}: not a finished run folder (no summary.json)')
    if not npy.is_file(): raise EnsembleError(f'{npy}: missing (the run has no 18-class validation predictions)')
    df, p = pd.read_csv(csv), np.load(npy)
    if len(df) != len(p): raise EnsembleError(f'{npy}: {len(p)} rows but {csv.name} has {len(df)}')
    return df, p


def check_aligned(frames: dict) -> None:
    "Raise a one-line EnsembleError unless every member's validation rows are the same images in the same order."
    items = list(frames.items())
    (d0, f0), rest = items[0], items[1:]
    for d, f in rest:
        if len(f) != len(f0) or not (f['path'].astype(str).to_numpy() == f0['path'].astype(str).to_numpy()).all():
            n = int((f['path'].astype(str).to_numpy() != f0['path'].astype(str).to_numpy()).sum()) if len(f) == len(f0) else None
            why = f'{len(f)} vs {len(f0)} rows' if n is None else f'{n} of {len(f)} rows differ'
            raise EnsembleError(f'{d}: validation rows differ from {d0} ({why}); members need the same split settings')


def ensemble_runs(run_dirs, src=None, bs: int = 64, num_workers: int | None = None,
                  log=None) -> tuple[np.ndarray, np.ndarray | None]:
    "Soft vote of finished runs: (validation probabilities, eval probabilities or None) as means of the members'."
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs: raise EnsembleError('an ensemble needs at least one run folder')
    valid = {d: member_valid(d) for d in run_dirs}
    check_aligned({d: v[0] for d, v in valid.items()})
    vp = soft_vote([v[1] for v in valid.values()])
    src = None if src is None else (src if isinstance(src, DataSource) else open_data(src))
    if src is None or src.eval is None: return vp, None
    eps = []
    for d in run_dirs:
        if log: log(f'predicting {len(src.eval)} eval images with {d}')
        eps.append(predict_paths(d, src.eval['path'], bs=bs, num_workers=num_workers))
    return vp, soft_vote(eps)


def ensemble_report(run_dirs, src=None, out_dir=None, submission=None, bs: int = 64, num_workers: int | None = None,
                    log=None) -> dict:
    "Soft-vote finished runs; write the submission (and validation predictions into `out_dir`); return the F1s."
    run_dirs = [Path(d) for d in run_dirs]
    vp, ep = ensemble_runs(run_dirs, src, bs=bs, num_workers=num_workers, log=log)
    df = pd.read_csv(run_dirs[0] / 'valid_preds.csv')
    keep = [c for c in ('path', 'person', 'mask', 'gender', 'age', 'label') if c in df.columns]
    vf = df[keep].assign(pred=vp.argmax(1))
    member_f1 = {str(d): read_json(d / 'summary.json').get('valid_f1') for d in run_dirs}
    res = dict(members=[str(d) for d in run_dirs], member_f1=member_f1, n_valid=len(vf), **scores(vf))
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_csv(out_dir / 'valid_preds.csv', vf)
        np.save(out_dir / 'valid_probs.npy', vp.astype(np.float32))
    if ep is not None:
        src = src if isinstance(src, DataSource) else open_data(src)
        sub = submission or (out_dir / 'submission.csv' if out_dir is not None else None)
        if sub is not None: res['submission'] = str(write_submission(sub, src.eval, ep))
        res.update(score_eval(src, ep))
    return res


@register_runner('ensemble')
def run_ensemble(recipe: Recipe, src: DataSource, run_dir: Path, out=Path('runs'), overrides: dict | None = None,
                 weights=None, num_workers: int | None = None, log=print, **_) -> dict:
    "Reuse or train each member, soft-vote them, and record members' folders and F1s in the summary."
    members = member_runs(recipe, src, out, overrides, log=log, run_dir=run_dir, weights=weights, num_workers=num_workers)
    res = ensemble_report([d for d, _ in members.values()], src, run_dir, num_workers=num_workers, log=log)
    res['member_runs'] = {n: str(d) for n, (d, _) in members.items()}
    res['member_f1'] = {n: res['member_f1'][str(d)] for n, (d, _) in members.items()}
    res['reused'] = sorted(n for n, (_, r) in members.items() if r)
    return res
