"""Pseudo-labelling: predict the eval images, keep the confident ones, retrain with them on the training side only.

A pseudo run folder holds `base/` (the first run, a normal run folder), `pseudo_labels.csv` (kept eval images,
their class and confidence) and, at the top level, the retrained run (models, valid_preds.csv, submission.csv).
The validation people are the base run's: eval images never enter validation.
Recipe field: `pseudo_threshold=0.9`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.data.block import person_split
from fastmask.errors import RecipeError
from fastmask.io import write_csv
from fastmask.labels import decode
from fastmask.sources.datasource import DataSource
from fastmask.inference.predict import predict_paths
from fastmask.recipes.registry import Recipe
from fastmask.rundir import RunDir
from fastmask.runners.registry import register_runner
from fastmask.runners.run import sub_run
from fastmask.runners.train import run_train
from fastmask.runspec import RunSpec

__all__ = ['select_pseudo', 'pseudo_rows', 'with_pseudo', 'run_pseudo', 'DEFAULT_THRESHOLD']

DEFAULT_THRESHOLD = Recipe.__dataclass_fields__['pseudo_threshold'].default


def select_pseudo(eval_df: pd.DataFrame, probs: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    "Eval rows whose top 18-class probability is at least `threshold`, with `label` and `confidence`."
    if not 0 < threshold <= 1: raise RecipeError(f'pseudo_threshold {threshold} must lie in (0, 1]')
    probs = np.asarray(probs)
    if len(probs) != len(eval_df): raise ValueError(f'{len(probs)} predictions for {len(eval_df)} eval images')
    conf, label = probs.max(1), probs.argmax(1)
    keep = conf >= threshold
    return eval_df.loc[keep, ['ImageID', 'path']].assign(label=label[keep], confidence=conf[keep]).reset_index(drop=True)


def pseudo_rows(sel: pd.DataFrame, age_cut: int) -> pd.DataFrame:
    "Training rows for pseudo-labelled images: each image its own person, an age inside its predicted group."
    m, g, a = decode(sel['label'].to_numpy().astype(int))
    age = np.choose(a, [29, 30, age_cut])                  # group 0: < 30, group 1: 30..cut-1, group 2: >= cut
    return pd.DataFrame({'path': sel['path'].to_numpy(), 'person': 'pseudo_' + sel['ImageID'].astype(str),
                         'folder': '', 'photo': 'pseudo', 'mask': m, 'gender': g, 'age': age, 'race': '',
                         'age_group': a, 'label': sel['label'].to_numpy().astype(int)})


def with_pseudo(src: DataSource, sel: pd.DataFrame, splits, age_cut: int) -> tuple[DataSource, tuple]:
    "The data with pseudo rows appended, and splits whose validation rows are the original ones only."
    train = src.train.reset_index(drop=True)
    extra = pseudo_rows(sel, age_cut).reindex(columns=train.columns) if len(sel) else train.iloc[:0]
    both = pd.concat([train, extra], ignore_index=True)
    new_train = np.concatenate([np.asarray(splits[0]), np.arange(len(train), len(both))])
    return DataSource(src.root, both, src.eval, src.truth, src.kind), (new_train, np.asarray(splits[1]))


@register_runner('pseudo')
def run_pseudo(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train, pseudo-label the confident eval images, and retrain with them (same validation people)."
    recipe = spec.recipe
    if src.eval is None: raise RecipeError(f'recipe {recipe.name} pseudo-labels eval images, but {src.root} has none')
    thr = float(recipe.pseudo_threshold)
    s2 = spec.with_recipe(replace(recipe, kind='train'))
    r = s2.recipe
    if splits is None: splits = person_split(src.train.reset_index(drop=True), r.valid_pct, r.split_seed)
    base_dir = RunDir(run_dir).part('base')
    base = sub_run(s2, src, base_dir.path, splits=splits, cbs=cbs, log=log)  # reused on resume
    probs = np.load(base_dir.eval_probs) if base_dir.eval_probs.exists() else \
        predict_paths(base_dir.path, src.eval['path'], runtime=spec.runtime)
    sel = select_pseudo(src.eval, probs, thr)
    write_csv(RunDir(run_dir).pseudo_labels, sel)
    src2, splits2 = with_pseudo(src, sel, splits, r.age_cut)
    summary = run_train(s2, src2, Path(run_dir), splits=splits2, cbs=cbs, log=log)
    summary.update(pseudo_threshold=thr, n_pseudo=int(len(sel)), n_eval=int(len(src.eval)),
                   **{f'base_{k}': v for k, v in base.items() if 'f1' in k})
    return summary
