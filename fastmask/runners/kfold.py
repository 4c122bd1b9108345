"""K-fold by person: stratified group folds, one normal run folder per fold, out-of-fold scores, soft-voted folds.

A k-fold run folder holds `fold0/ ... fold{k-1}/` (each a normal run folder), `oof_probs.npy` and `oof_preds.csv`
(every training photo predicted by the fold model that did not see its person), `submission.csv` (the folds'
soft vote) and a `summary.json` with `oof_f1` next to each fold's `valid_f1`.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from fastmask.data.block import person_keys, person_strata
from fastmask.errors import LayoutError, RecipeError
from fastmask.inference.predict import as_18class, soft_vote, task_probs, write_submission
from fastmask.inference.scoring import macro_f1, score_eval, scores
from fastmask.io import save_npy, write_csv
from fastmask.recipes.registry import Recipe
from fastmask.runners.registry import get_runner, register_hook, register_runner
from fastmask.rundir import RunDir
from fastmask.runners.run import find_run, sub_run
from fastmask.runspec import RunSpec
from fastmask.sources.datasource import DataSource

__all__ = ['person_folds', 'fold_dirs', 'as_kfold', 'fold_recipe', 'run_fold', 'run_kfold', 'predict_folds',
           'DEFAULT_FOLDS']

DEFAULT_FOLDS = Recipe.__dataclass_fields__['folds'].default


def person_folds(df: pd.DataFrame, k: int = DEFAULT_FOLDS, seed: int = 156) -> list[tuple[np.ndarray, np.ndarray]]:
    "Row indices (train, valid) of `k` folds: people never split, folds stratified by gender x age group."
    df = df.reset_index(drop=True)
    keys = person_keys(df).reset_index(drop=True)
    strata = person_strata(df, keys)
    if k < 2: raise RecipeError(f'k-fold needs at least 2 folds, not {k}')
    if len(strata) < k: raise LayoutError(f'cannot split {len(strata)} person(s) into {k} folds')
    y = strata.loc[keys].to_numpy()
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(va)) for tr, va in sgkf.split(np.zeros(len(df)), y, keys.to_numpy())]


def fold_dirs(run_dir) -> list[Path]:
    "The fold run folders of a k-fold run folder, in order (empty for other run folders)."
    return [d.path for d in RunDir(run_dir).folds()]


def as_kfold(recipe: Recipe, folds: int) -> Recipe:
    "Any recipe wrapped in the k-fold runner (`--folds K`)."
    if folds < 2: raise RecipeError(f'--folds {folds}: k-fold needs at least 2 folds')
    inner = recipe.fold_kind if recipe.kind == 'kfold' else recipe.kind
    if inner != 'train': raise RecipeError(f"recipe {recipe.name} (kind '{inner}') cannot be k-folded: only 'train' recipes")
    return replace(recipe, kind='kfold', folds=folds, fold_kind=inner)


def fold_recipe(recipe: Recipe, fold: int) -> Recipe:
    "One fold of a k-fold recipe as its own recipe (`--fold I`): a job of its own, e.g. on another GPU."
    if recipe.kind != 'kfold': raise RecipeError(f'recipe {recipe.name} is not k-fold: add --folds K to pick a fold')
    if not 0 <= fold < recipe.folds: raise RecipeError(f'--fold {fold}: the recipe has folds 0..{recipe.folds - 1}')
    return replace(recipe, name=f'{recipe.name}_fold{fold}', kind='fold', fold=fold)


@register_runner('fold')
def run_fold(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train one fold of a k-fold recipe (validation: that fold's people; `splits` is ignored)."
    r = spec.recipe
    if r.fold is None: raise RecipeError(f'recipe {r.name} is a fold job without a fold (fold_recipe sets it)')
    splits = person_folds(src.train.reset_index(drop=True), r.folds, r.split_seed)[r.fold]
    s = get_runner(r.fold_kind)(spec.with_recipe(replace(r, kind='train')), src, run_dir, splits=splits, cbs=cbs, log=log)
    return dict(s, fold=r.fold, folds=r.folds)


@register_runner('kfold')
def run_kfold(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train the recipe once per fold into `run_dir/fold{i}`, score the out-of-fold predictions, soft-vote the folds."
    recipe, rd = spec.recipe, RunDir(run_dir)
    k = recipe.folds
    train = src.train.reset_index(drop=True)
    folds = person_folds(train, k, recipe.split_seed)
    oof = np.full((len(train), 18), np.nan, dtype=np.float32)
    frames, fold_f1, eval_probs = [], [], []
    for i, (tr, va) in enumerate(folds):
        sub, fs = rd.fold(i), spec.with_recipe(fold_recipe(recipe, i))
        done = None if sub.config.is_file() else find_run(spec.out, fs)
        if done is not None:                           # reuse a fold trained as its own job (`--fold I`)
            shutil.copytree(done, sub.path)
            s = sub.read_summary()
        else:                                          # train it, or reuse / continue it after an interruption
            s = sub_run(fs, src, sub.path, config=dict(fold=i, folds=k), cbs=cbs, log=log)
        fold_f1.append(s.get('valid_f1'))
        vf = pd.read_csv(sub.valid_preds).assign(fold=i)
        frames.append(vf)
        if sub.valid_probs.exists(): oof[va] = np.load(sub.valid_probs)
        if sub.eval_probs.exists(): eval_probs.append(np.load(sub.eval_probs))
    oof_df = pd.concat(frames, ignore_index=True)
    write_csv(rd.oof_preds, oof_df)
    summary = dict(folds=k, fold_valid_f1=fold_f1, n_train=int(len(train)))
    if not np.isnan(oof).any():
        save_npy(rd.oof_probs, oof)
        summary['oof_f1'] = round(macro_f1(train['label'], oof.argmax(1)), 4)
    summary.update({k_: v for k_, v in scores(oof_df, prefix='oof_').items() if k_ != 'oof_f1'})
    if fold_f1 and all(f is not None for f in fold_f1):
        summary['valid_f1'] = round(float(np.mean(fold_f1)), 4)   # mean over folds (compare with a single split)
    if len(eval_probs) == k and src.eval is not None:
        ep = soft_vote(eval_probs)
        save_npy(rd.eval_probs, ep)
        write_submission(rd.submission, src.eval, ep)
        summary.update(score_eval(src, ep))
    return summary


@register_hook('kfold', 'predict')
def predict_folds(run_dir, paths, **kw) -> dict[str, np.ndarray]:
    "A k-fold run folder's probabilities: the soft vote of its folds (18 classes when every fold has them)."
    folds = fold_dirs(run_dir)
    if not folds: raise LayoutError(f'{run_dir}: k-fold run folder without finished folds')
    per = [task_probs(d, paths, **kw) for d in folds]
    p18 = [as_18class(p) for p in per]
    if all(p is not None for p in p18): return dict(all=soft_vote(p18))
    return {t: soft_vote([p[t] for p in per]) for t in set.intersection(*(set(p) for p in per))}
