"""Soft-voting ensembles of finished runs, and the 'ensemble' runner that reuses or trains its members."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import FastmaskError
from .io import read_json, write_csv, write_json
from .layout import DataSource, open_data
from .predict import predict_paths, scores, soft_vote, write_submission
from .recipes import Recipe, resolve
from .train import register_runner, run_recipe

__all__ = ['EnsembleError', 'is_finished', 'find_run', 'member_runs', 'member_valid', 'check_aligned',
           'ensemble_runs', 'ensemble_report', 'run_ensemble']


class EnsembleError(FastmaskError, ValueError):
    "Member runs that cannot be combined (unfinished, no 18-class predictions, different validation rows)."


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
        try: same = Recipe.from_dict(cfg['recipe']) == recipe
        except (KeyError, TypeError): continue
        if same and _same_data(cfg, src): return d
    return None


def member_runs(recipe: Recipe, src: DataSource, out, overrides: dict | None = None, log=print,
                **opts) -> dict[str, tuple[Path, bool]]:
    "Each member of `recipe`: (run folder, reused?) -- the latest matching finished run under `out`, else a new run."
    overrides = {k: v for k, v in (overrides or {}).items()}
    if not recipe.members: raise FastmaskError(f'recipe {recipe.name} lists no members')
    res = {}
    for name in recipe.members:
        m = resolve(name, **overrides)
        d = find_run(out, m, src)
        if d is not None: log(f'{recipe.name}: reusing {name} run {d}')
        else: log(f'{recipe.name}: training {name}')
        res[name] = (d, True) if d is not None else (run_recipe(m, src, out, overrides=overrides, **opts), False)
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


def _eval_scores(src: DataSource, probs: np.ndarray) -> dict:
    if src.truth is None: return {}
    truth = src.truth.set_index('ImageID').loc[src.eval['ImageID'], 'ans'].to_numpy()
    return {f'eval_{k[6:]}': v for k, v in scores(pd.DataFrame({'label': truth, 'pred': probs.argmax(1)})).items()}


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
        res.update(_eval_scores(src, ep))
    return res


@register_runner('ensemble')
def run_ensemble(recipe: Recipe, src: DataSource, run_dir: Path, out=Path('runs'), overrides: dict | None = None,
                 weights=None, num_workers: int | None = None, log=print, **_) -> dict:
    "Reuse or train each member, soft-vote them, and record members' folders and F1s in the summary."
    members = member_runs(recipe, src, out, overrides, log=log, weights=weights, num_workers=num_workers)
    res = ensemble_report([d for d, _ in members.values()], src, run_dir, num_workers=num_workers, log=log)
    res['member_runs'] = {n: str(d) for n, (d, _) in members.items()}
    res['member_f1'] = {n: res['member_f1'][str(d)] for n, (d, _) in members.items()}
    res['reused'] = sorted(n for n, (_, r) in members.items() if r)
    write_json(run_dir / 'members.json', res['member_runs'])
    return res
