"""The run, as the page shows it: recipe, data, settings and scores (config.json, summary.json) and per-epoch curves
(metrics_<task>.csv), for a run folder and the folds or members it is made of."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.plots import plot_curves
from fastmask.rundir import RunDir
from fastmask.runs import format_overrides, run_status
from fastmask.tools.evaluate import run_parts

from fastmask.app.mistakes import figure_image

__all__ = ['RECIPE_FIELDS', 'overview', 'scores', 'curves', 'metrics_table', 'title']

#: the recipe fields the page lists first (the whole recipe is shown as JSON below them)
RECIPE_FIELDS = ('name', 'description', 'kind', 'arch', 'tasks', 'size', 'epochs', 'bs', 'lr', 'lr_mult', 'loss', 'head',
                 'head_init', 'bn', 'freeze_epochs', 'norm', 'pretrained', 'crop', 'age_cut', 'preprocess', 'folds',
                 'members', 'seed')
_SCORE_PREFIXES = ('valid_f1', 'eval_f1', 'oof_f1')


def _cell(v) -> str:
    if isinstance(v, (list, tuple)): v = ', '.join(map(str, v))
    elif isinstance(v, float): v = f'{v:.4g}'
    return str(v).replace('|', '\\|').replace('\n', ' ') if v not in (None, '') else '-'


def _table(rows: dict, what: str) -> str:
    return f'| {what} | |\n|---|---|\n' + ''.join(f'| {k} | {_cell(v)} |\n' for k, v in rows.items())


def title(run_dir) -> str:
    "The run's name as `recipe/stamp`."
    p = Path(run_dir).resolve()
    return f'{p.parent.name}/{p.name}'


def scores(summary: dict) -> dict:
    "The summary's F1 scores (validation, eval, out-of-fold) and counts, in that order."
    out = {k: v for k, v in sorted(summary.items()) if k.startswith(_SCORE_PREFIXES) and not isinstance(v, (dict, list))}
    for k in ('n_train', 'n_valid', 'wall_time_s'):
        if k in summary: out[k] = summary[k]
    return out


def overview(run_dir) -> dict[str, str]:
    "Markdown of a run folder, by part: `head` (status, kind, parts), `recipe`, `data`, `settings`, `scores`."
    rd = RunDir(run_dir)
    cfg = rd.config_or_empty()
    try: summary = rd.read_summary() if rd.summary.is_file() else {}
    except (OSError, ValueError): summary = {}
    recipe = cfg.get('recipe') or {}
    parts = run_parts(run_dir)
    head = (f"### {title(run_dir)}\n**{run_status(run_dir)}**, kind `{rd.kind}`, started {cfg.get('started', '?')}"
            + (f", {len(parts)} part(s): {', '.join(Path(p).name for p in parts)}" if parts else ''))
    rec = {k: recipe[k] for k in RECIPE_FIELDS if k in recipe and recipe[k] not in (None, '', [], ())}
    if cfg.get('overrides'): rec['overrides'] = format_overrides(cfg['overrides'])
    data = {k: cfg.get(k) for k in ('data', 'data_check', 'skip_bad', 'skipped', 'fix_labels', 'relabel') if k in cfg}
    if cfg.get('data_fingerprint'): data['fingerprint'] = cfg['data_fingerprint'][:16] + '...'
    settings = dict(cfg.get('runtime') or {}, device=cfg.get('device'), weights=cfg.get('weights'))
    versions = cfg.get('versions') or {}
    settings.update({k: versions[k] for k in ('fastmask', 'torch', 'fastai', 'timm') if versions.get(k)})
    sc = scores(summary)
    return dict(head=head, recipe=_table(rec, 'recipe'), data=_table(data, 'data'), settings=_table(settings, 'settings'),
                scores=_table(sc, 'scores') if sc else 'no scores yet (summary.json is written when the run finishes)')


def _metrics(run_dir) -> dict[str, Path]:
    "Metric logs of the run and of its folds / members, by `task` or `part/task`."
    out = dict(RunDir(run_dir).metrics_files())
    for p in map(Path, run_parts(run_dir)):   # folds by their name, ensemble members by recipe/stamp
        name = p.name if p.parent.resolve() == Path(run_dir).resolve() else f'{p.parent.name}/{p.name}'
        out.update({f'{name}/{t}': f for t, f in _metrics(p).items()})
    return out


def curves(run_dir) -> list[tuple]:
    "(image, caption) of each metric log's loss and F1 curves (`plots.plot_curves`)."
    out = []
    for name, f in _metrics(run_dir).items():
        try: out.append((figure_image(plot_curves(f, f'{title(run_dir)}: {name}')), name))
        except (FastmaskError, pd.errors.EmptyDataError, KeyError, ValueError): pass
    return out


def metrics_table(run_dir) -> pd.DataFrame:
    "Every logged epoch of every metric log, with its `model` (task or part/task) first."
    frames = []
    for name, f in _metrics(run_dir).items():
        try: frames.append(pd.read_csv(f).assign(model=name))
        except (OSError, pd.errors.EmptyDataError, ValueError): pass
    if not frames: return pd.DataFrame({'model': []})
    df = pd.concat(frames, ignore_index=True)
    return df[['model', *[c for c in df.columns if c != 'model']]].round(4)
