"""The runner registry, a leaf (timm's `_registry.py` idea): recipe kind -> the function that runs it.

A runner module registers its functions with `@register_runner(kind)` and its prediction hooks with
`@register_hook(kind, name)`. This module imports none of them: `PROVIDERS` names the module that provides each
kind, and a lookup imports it, so nothing depends on which modules happen to have been imported already.

Prediction hooks, looked up by the kind recorded in a run folder's `config.json`:
- `predict(run_dir, paths, **kw) -> probs`: the whole prediction (k-fold: soft vote of the fold folders);
- `preprocess(run_dir, paths) -> paths`: what the models see instead of the photos (face crops);
- `heads(run_dir, paths, probs) -> {task: probs}`: task heads from outside the run (a packaged age estimator).
"""
from __future__ import annotations

import fnmatch
import importlib
from typing import Callable

from fastmask.errors import RecipeError

__all__ = ['PROVIDERS', 'HOOKS', 'register_runner', 'register_hook', 'get_runner', 'get_hook', 'list_kinds']

#: recipe kind -> module that registers its runner (and hooks)
PROVIDERS: dict[str, str] = {
    'train': 'fastmask.runners.train',
    'fold': 'fastmask.runners.kfold',
    'kfold': 'fastmask.runners.kfold',
    'ensemble': 'fastmask.runners.ensemble',
    'comparison': 'fastmask.runners.comparison',
    'pseudo': 'fastmask.runners.pseudo',
    'sweep_age_cut': 'fastmask.runners.sweep',
    'facecrop': 'fastmask.runners.facecrop',
    'external_age': 'fastmask.runners.agemodel',
}
#: the prediction hooks a kind may provide
HOOKS = ('predict', 'preprocess', 'heads')

_RUNNERS: dict[str, Callable] = {}
_HOOKS: dict[tuple[str, str], Callable] = {}


def register_runner(kind: str):
    "Register `f(recipe, data, run_dir, **opts) -> summary dict` as the runner of recipes of `kind`."
    def deco(f):
        _RUNNERS[kind] = f
        return f
    return deco


def register_hook(kind: str, name: str):
    "Register a prediction hook (`predict`, `preprocess` or `heads`) of run folders of `kind`."
    if name not in HOOKS: raise ValueError(f"unknown prediction hook '{name}' (one of {', '.join(HOOKS)})")
    def deco(f):
        _HOOKS[kind, name] = f
        return f
    return deco


def _load(kind: str) -> None:
    "Import the module that provides `kind` (it registers itself)."
    if kind in PROVIDERS: importlib.import_module(PROVIDERS[kind])


def get_runner(kind: str) -> Callable:
    "The runner of `kind`, loading its module; a one-line RecipeError for an unknown kind."
    if kind not in _RUNNERS: _load(kind)
    if kind not in _RUNNERS:
        raise RecipeError(f"unknown runner kind '{kind}' (one of {', '.join(sorted(PROVIDERS))})")
    return _RUNNERS[kind]


def get_hook(kind: str, name: str) -> Callable | None:
    "The prediction hook `name` of run folders of `kind`, or None when the kind has none."
    if (kind, name) not in _HOOKS: _load(kind)
    return _HOOKS.get((kind, name))


def list_kinds(pattern: str = '*') -> list[str]:
    "Runner kinds whose name matches a shell pattern."
    return [k for k in PROVIDERS if fnmatch.fnmatchcase(k, pattern)]
