"""Age-threshold sweep: train once per age cut (label '>= 60' from that age), score the true 18 classes.

Every cut point trains into `run_dir/cut{age}/` (a normal run folder) on the same person split; the validation
labels stay the competition's (>= 60 means 60), so the cut points compare fairly. Writes `sweep.csv` (one row
per cut: 18-class macro F1 and the age F1) and `sweep.png`.
Recipe field: `age_cuts=(57, 58, 59, 60)`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from fastmask.data.block import person_split
from fastmask.errors import RecipeError
from fastmask.io import atomic_path, write_csv
from fastmask.rundir import RunDir
from fastmask.runners.registry import register_runner
from fastmask.runners.run import sub_run
from fastmask.runspec import RunSpec
from fastmask.sources.datasource import DataSource

__all__ = ['DEFAULT_CUTS', 'sweep_table', 'plot_sweep', 'run_sweep_age_cut']

DEFAULT_CUTS = (57, 58, 59, 60)


def sweep_table(summaries: dict[int, dict]) -> pd.DataFrame:
    "One row per age cut with its validation (and, where known, eval) macro F1s."
    rows = [dict(age_cut=c, **{k: v for k, v in s.items() if isinstance(v, (int, float)) and 'f1' in k})
            for c, s in sorted(summaries.items())]
    return pd.DataFrame(rows)


def plot_sweep(table: pd.DataFrame, path, title: str = 'age cut sweep') -> Path:
    "Line plot of the 18-class (and age) macro F1 per age cut, saved atomically as PNG."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for col, lbl in (('valid_f1', '18-class macro F1'), ('valid_f1_age', 'age macro F1'), ('eval_f1', 'eval 18-class F1')):
        if col in table.columns: ax.plot(table['age_cut'], table[col], marker='o', label=lbl)
    ax.set_xlabel("age labelled '>= 60' from"), ax.set_ylabel('macro F1 (validation)'), ax.set_title(title)
    ax.set_xticks(list(table['age_cut'])), ax.grid(alpha=.3), ax.legend()
    fig.tight_layout()
    with atomic_path(path, '.png') as tmp: fig.savefig(tmp, format='png', dpi=100)
    plt.close(fig)
    return Path(path)


@register_runner('sweep_age_cut')
def run_sweep_age_cut(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train the recipe at each age cut and report the 18-class macro F1 per cut in sweep.csv and sweep.png."
    recipe, rd = spec.recipe, RunDir(run_dir)
    cuts = tuple(int(c) for c in (recipe.age_cuts or DEFAULT_CUTS))
    if not cuts: raise RecipeError(f'recipe {recipe.name}: age_cuts is empty')
    splits = person_split(src.train.reset_index(drop=True), recipe.valid_pct, recipe.split_seed)
    summaries = {}
    for c in cuts:
        r = replace(recipe, kind='train', age_cut=c)
        summaries[c] = dict(sub_run(spec.with_recipe(r), src, rd.part(f'cut{c}').path, splits=splits, cbs=cbs, log=log),
                            age_cut=c)  # a finished cut is reused on resume
    table = sweep_table(summaries)
    write_csv(rd.sweep, table)
    plot_sweep(table, rd.sweep_plot, f'{recipe.name}: 18-class macro F1 per age cut')
    best = table.loc[table['valid_f1'].idxmax()] if 'valid_f1' in table.columns else None
    out = dict(age_cuts=list(cuts), sweep={int(r['age_cut']): r.get('valid_f1') for _, r in table.iterrows()})
    if best is not None: out.update(best_age_cut=int(best['age_cut']), valid_f1=float(best['valid_f1']))
    return out
