"""The run specification: everything that defines a run, built once, written once as config.json, read back as is.

A `RunSpec` holds the resolved recipe (what the model learns), the `DataSpec` (which data and how it was prepared:
`--skip-bad`, `--fix-labels`, `--relabel FILE` and its hash, the data's fingerprint), the `Runtime` (how it computes:
precision, channels-last, compile, cache, workers, determinism), the backbone weights file and its hash, the
tracker and tags. The command line and the Python API build one (`RunSpec.build`); `run_recipe` writes it as the
run folder's config.json; `resume` reads it back (`RunSpec.from_config`); the reuse that `study`, `tune` and
ensembles do compares `reuse_key()`: the recipe's settings (not its words), the data, its preparation and the
weights — not the runtime, not the tags. Runners, prediction and the probe take the spec or its runtime, never
process-wide settings.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastmask.errors import FastmaskError
from fastmask.recipes.registry import Recipe, as_tuples
from fastmask.runinfo import environment
from fastmask.runtime import Runtime
from fastmask.sources.check import Prepared, prepare_data
from fastmask.sources.datasource import DataSource
from fastmask.sources.open import data_path

__all__ = ['DataSpec', 'RunSpec', 'file_sha256']


def file_sha256(path) -> str:
    "sha256 of a file's bytes ('' when it does not exist)."
    p = Path(path)
    if not p.is_file(): return ''
    h = hashlib.sha256()
    with p.open('rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''): h.update(chunk)
    return h.hexdigest()


def _abs(p) -> str | None: return None if p is None else str(Path(p).expanduser().resolve())


@dataclass(frozen=True)
class DataSpec:
    "The data of a run and how it was prepared (filled in by `prepare`: the fingerprint and the relabel file's hash)."
    path: str                       # absolute path of the layout folder or labels CSV ('demo' resolved)
    skip_bad: bool = False          # train on what passes `fastmask data check`
    fix_labels: bool = False        # correct the known label noise
    relabel: str | None = None      # a reviewed relabel CSV (absolute path)
    relabel_sha256: str = ''
    fingerprint: str = ''           # sha256 of the usable training images (content) and train.csv

    @classmethod
    def of(cls, data, skip_bad: bool = False, fix_labels: bool = False, relabel=None) -> 'DataSpec':
        "An unprepared data spec of a data argument ('demo', a folder, a labels CSV, or a DataSource)."
        if isinstance(data, DataSource): data = data.root
        return cls(_abs(data_path(data)), bool(skip_bad), bool(fix_labels), _abs(relabel))

    def prepare(self, age_cut: int | None = None) -> tuple[DataSource, Prepared, 'DataSpec']:
        "Check and open the data as this spec says; (source, what was done, the spec with fingerprint and hashes)."
        src, prep = prepare_data(self.path, skip_bad=self.skip_bad, fix_labels=self.fix_labels, age_cut=age_cut,
                                 relabel=self.relabel)
        return src, prep, replace(self, fingerprint=prep.fingerprint, relabel_sha256=(prep.relabel or {}).get('sha256', ''))

    def config(self) -> dict:
        "Its entries of config.json (the keys older run folders have)."
        return dict(data=self.path, data_fingerprint=self.fingerprint, skip_bad=self.skip_bad,
                    fix_labels=self.fix_labels, relabel_file=self.relabel, relabel_sha256=self.relabel_sha256)

    @classmethod
    def from_config(cls, cfg: dict) -> 'DataSpec':
        rel = cfg.get('relabel') or {}
        return cls(str(cfg.get('data', '')), bool(cfg.get('skip_bad', False)), bool(cfg.get('fix_labels', False)),
                   cfg.get('relabel_file') or rel.get('file'), cfg.get('relabel_sha256') or rel.get('sha256', ''),
                   cfg.get('data_fingerprint', ''))


@dataclass(frozen=True)
class RunSpec:
    "Everything that defines a run (see the module docstring)."
    recipe: Recipe
    data: DataSpec
    runtime: Runtime = Runtime()
    weights: str | None = None                          # local backbone weights file
    weights_sha256: str = ''
    track: str | None = None                            # tensorboard, mlflow or wandb
    tags: dict = field(default_factory=dict)            # e.g. tune's {study, trial, params}
    overrides: dict = field(default_factory=dict)       # what the command changed in the recipe (recorded as given)
    out: str = 'runs'                                   # the root of run folders (composites put members there)

    @classmethod
    def build(cls, recipe: Recipe, data='demo', *, out='runs', skip_bad: bool = False, fix_labels: bool = False,
              relabel=None, weights=None, runtime: Runtime | None = None, track: str | None = None,
              tags: dict | None = None, overrides: dict | None = None) -> 'RunSpec':
        "A spec from a command's or the Python API's arguments (the weights file hashed, paths made absolute)."
        if weights is not None and not Path(weights).is_file(): raise FastmaskError(f'{weights}: weights file not found')
        return cls(recipe, DataSpec.of(data, skip_bad, fix_labels, relabel), runtime or Runtime(), _abs(weights),
                   file_sha256(weights) if weights else '', track, dict(tags or {}),
                   {k: v for k, v in (overrides or {}).items() if v is not None}, _abs(out))

    def with_recipe(self, recipe: Recipe, **changes) -> 'RunSpec':
        "The same run of another recipe (a composite's member or fold), with other fields changed too."
        return replace(self, recipe=recipe, **changes)

    def reuse_key(self) -> dict:
        "What must be equal for a finished run to stand for this one: recipe settings, data, preparation, weights."
        d = self.data
        return dict(recipe=self.recipe.settings(), data=d.path, fingerprint=d.fingerprint, skip_bad=d.skip_bad,
                    fix_labels=d.fix_labels, relabel=d.relabel_sha256 or d.relabel,
                    weights=self.weights_sha256 or self.weights)

    def same_run(self, other: 'RunSpec') -> bool: return _plain(self.reuse_key()) == _plain(other.reuse_key())

    def to_config(self, prep: Prepared | None = None, **more) -> dict:
        "config.json: the spec, what data preparation did (`prep`), the environment, and `more` (e.g. a fold's index)."
        return {**(prep.config() if prep else {}), **self.data.config(), **more, **environment(),
                'recipe': self.recipe.to_dict(), 'weights': self.weights, 'weights_sha256': self.weights_sha256,
                'runtime': self.runtime.to_dict(), 'track': self.track, 'tags': self.tags, 'overrides': self.overrides,
                'out': self.out}

    @classmethod
    def from_config(cls, cfg: dict) -> 'RunSpec':
        "The spec a config.json records; older run folders' `options.speed` and recipe speed fields become the runtime."
        opts = cfg.get('options') or {}
        return cls(Recipe.from_dict(cfg['recipe']), DataSpec.from_config(cfg), Runtime.from_config(cfg), cfg.get('weights'),
                   cfg.get('weights_sha256', ''), cfg.get('track'), dict(cfg.get('tags') or {}),
                   {k: as_tuples(v) for k, v in (cfg.get('overrides') or {}).items()},
                   str(cfg.get('out') or opts.get('out') or 'runs'))


def _plain(d):
    "A comparable form of a key: tuples and lists alike (config.json stores tuples as lists)."
    if isinstance(d, dict): return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)): return [_plain(x) for x in d]
    return d
