"""Soft-voting ensembles of finished runs, and the 'ensemble' runner that reuses or trains its members."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.io import save_npy, write_csv
from fastmask.sources.datasource import DataSource
from fastmask.sources.open import open_data
from fastmask.inference.predict import predict_paths, soft_vote, write_submission
from fastmask.inference.scoring import score_eval, scores
from fastmask.recipes.spec import resolve_spec
from fastmask.rundir import RunDir
from fastmask.runners.registry import register_runner
from fastmask.runners.run import find_run, resume_run, run_recipe
from fastmask.runspec import RunSpec
from fastmask.runtime import Runtime

__all__ = ['EnsembleError', 'member_runs', 'member_valid', 'check_aligned',
           'ensemble_runs', 'ensemble_report', 'run_ensemble']


class EnsembleError(FastmaskError, ValueError):
    "Member runs that cannot be combined (unfinished, no 18-class predictions, different validation rows)."


def member_runs(spec: RunSpec, src: DataSource, log=print, run_dir=None) -> dict[str, tuple[Path, bool]]:
    """Each member of `recipe`: (run folder, reused?) -- the latest matching finished run under `out`, else a new run.

    With `run_dir`, the member folders started are recorded in `run_dir/members.json` as they start, so that a
    resumed ensemble continues an interrupted member from its checkpoints instead of starting it again."""
    recipe = spec.recipe
    if not recipe.members: raise FastmaskError(f'recipe {recipe.name} lists no members')
    book = RunDir(run_dir) if run_dir is not None else None
    started = {k: str(v) for k, v in book.members().items()} if book is not None else {}
    def record(name, d):
        if book is None: return
        started[name] = str(d)
        book.write_members(started)
    res = {}
    for name in recipe.members:
        m = spec.with_recipe(resolve_spec(name, **spec.overrides), tags={})   # a member may be a variant: `x[seed=1]`
        d = find_run(spec.out, m)
        if d is not None:
            log(f'{recipe.name}: reusing {name} run {d}')
            res[name] = (d, True)
            record(name, d)
        elif name in started and RunDir(started[name]).finished:     # finished, though no longer `find_run`'s match
            res[name] = (Path(started[name]), True)
        elif name in started and RunDir(started[name]).config.is_file():
            log(f'{recipe.name}: continuing {name} run {started[name]}')
            res[name] = (resume_run(started[name], runtime=spec.runtime, log=log), False)
        else:
            log(f'{recipe.name}: training {name}')
            res[name] = (run_recipe(m, src, on_start=lambda d, n=name: record(n, d), log=log), False)
    return res


def member_valid(run_dir) -> tuple[pd.DataFrame, np.ndarray]:
    "A finished run's validation rows (`valid_preds.csv`) and 18-class probabilities (`valid_probs.npy`)."
    rd = RunDir(run_dir)
    csv, npy = rd.valid_preds, rd.valid_probs
    if not rd.finished: raise EnsembleError(f'{run_dir}: not a finished run folder (no {rd.SUMMARY})')
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


def ensemble_runs(run_dirs, src=None, bs: int = 64, runtime: Runtime | None = None,
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
        eps.append(predict_paths(d, src.eval['path'], bs=bs, runtime=runtime))   # None: each member's own
    return vp, soft_vote(eps)


def ensemble_report(run_dirs, src=None, out_dir=None, submission=None, bs: int = 64, runtime: Runtime | None = None,
                    log=None) -> dict:
    "Soft-vote finished runs; write the submission (and validation predictions into `out_dir`); return the F1s."
    run_dirs = [Path(d) for d in run_dirs]
    vp, ep = ensemble_runs(run_dirs, src, bs=bs, runtime=runtime, log=log)
    df = pd.read_csv(RunDir(run_dirs[0]).valid_preds)
    keep = [c for c in ('path', 'person', 'mask', 'gender', 'age', 'label') if c in df.columns]
    vf = df[keep].assign(pred=vp.argmax(1))
    member_f1 = {str(d): RunDir(d).read_summary().get('valid_f1') for d in run_dirs}
    res = dict(members=[str(d) for d in run_dirs], member_f1=member_f1, n_valid=len(vf), **scores(vf))
    if out_dir is not None:
        out = RunDir(out_dir)
        write_csv(out.valid_preds, vf)
        save_npy(out.valid_probs, vp.astype(np.float32))
    if ep is not None:
        src = src if isinstance(src, DataSource) else open_data(src)
        sub = submission or (RunDir(out_dir).submission if out_dir is not None else None)
        if sub is not None: res['submission'] = str(write_submission(sub, src.eval, ep))
        res.update(score_eval(src, ep))
    return res


@register_runner('ensemble')
def run_ensemble(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Reuse or train each member, soft-vote them, and record members' folders and F1s in the summary."
    members = member_runs(spec, src, log=log, run_dir=run_dir)
    res = ensemble_report([d for d, _ in members.values()], src, run_dir, log=log)
    res['member_runs'] = {n: str(d) for n, (d, _) in members.items()}
    res['member_f1'] = {n: res['member_f1'][str(d)] for n, (d, _) in members.items()}
    res['reused'] = sorted(n for n, (_, r) in members.items() if r)
    return res
