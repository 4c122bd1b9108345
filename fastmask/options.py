"""The command line's shared options, each declared once, in groups that commands take whole (`@takes(...)`).

A command lists the groups it takes; the decorator adds their options to the command's signature (what Typer
reads) and hands the command one `Args` object with what was given, which turns them into what the Python API
takes: the recipe changes (`Args.changes`), the `Runtime` (`Args.runtime`) and the `RunSpec` (`Args.spec`). So
`recipe`, `study`, `tune`, `data noise`, `lr-find`, `resume`, `predict` and `evaluate` accept the same data
preparation and speed options, spelt and checked the same way.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import List, Optional

import typer

__all__ = ['DATA_HELP', 'GROUPS', 'Args', 'takes']

DATA_HELP = "competition-layout folder, a labels .csv, or 'demo' (the built-in demo data)"
PRECISION_HELP = ('auto (CUDA: bf16 on compute capability >= 8, else fp16 with loss scaling; a CPU: fp32), fp32, '
                  'bf16 or fp16')


def _opt(name: str, kind, default, *decls, **kw) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, *decls, **kw), annotation=kind)


#: option groups, by name: each option is declared here and nowhere else
GROUPS: dict[str, list[inspect.Parameter]] = {
    'data': [_opt('data', str, 'demo', help=DATA_HELP)],
    'out': [_opt('out', Path, Path('runs'), help='root folder of run folders')],
    'recipe': [
        _opt('quick', bool, False, '--quick', help='CPU smoke run: 64 px images, five epochs'),
        _opt('epochs', Optional[int], None, min=1), _opt('size', Optional[int], None, min=16),
        _opt('bs', Optional[int], None, min=1), _opt('lr', Optional[float], None, min=0.0),
        _opt('arch', Optional[str], None, help='any timm model name'),
        _opt('seed', Optional[int], None),
        _opt('tasks', Optional[List[str]], None, help='train only these tasks (all, mask, gender, age)'),
        _opt('pretrained', Optional[bool], None, '--pretrained/--no-pretrained'),
        _opt('set_', Optional[List[str]], None, '--set', help='any recipe field, FIELD=VALUE (repeatable), e.g. --set bn=frozen'),
    ],
    'prep': [
        _opt('skip_bad', bool, False, '--skip-bad', help='train on the data that passes `fastmask data check`; list the rest in RUN_DIR/skipped.csv'),
        _opt('fix_labels', bool, False, '--fix-labels', help='correct the known label noise (recorded in config.json)'),
        _opt('relabel', Optional[Path], None, help="reviewed relabel CSV (see 'fastmask data noise'; recorded in config.json)"),
    ],
    'weights': [_opt('weights', Optional[Path], None, help='local weights file for the backbone')],
    'speed': [
        _opt('precision', Optional[str], None, help=PRECISION_HELP),
        _opt('channels_last', Optional[bool], None, '--channels-last/--no-channels-last', help='channels-last memory format (default: auto)'),
        _opt('compile', bool, False, '--compile', help='torch.compile the model'),
        _opt('no_cache', bool, False, '--no-cache', help='decode JPEGs every time, no image cache'),
        _opt('workers', Optional[int], None, min=0, help='data loader worker processes'),
        _opt('deterministic', bool, False, '--deterministic', help='bit-reproducible GPU kernels (slower; default: cudnn.benchmark)'),
    ],
    'track': [_opt('track', Optional[str], None, help='log to tensorboard, mlflow or wandb (offline, in the run folder)')],
}
_NAMES = {p.name: g for g, ps in GROUPS.items() for p in ps}


class Args:
    "What a command was given of its option groups, and what the Python API makes of it."
    def __init__(self, given: dict): self.__dict__.update(given)
    def __getattr__(self, name):   # an option of a group the command does not take: its default
        if name in _NAMES: return next(p for p in GROUPS[_NAMES[name]] if p.name == name).default.default
        raise AttributeError(name)

    def changes(self, **more) -> dict:
        "The recipe overrides: the recipe options and `--set FIELD=VALUE` items (the architecture checked)."
        from fastmask.errors import RecipeError
        from fastmask.models.backbones import check_arch
        from fastmask.recipes import parse_set
        if self.arch: check_arch(self.arch)
        named = dict(epochs=self.epochs, size=self.size, bs=self.bs, lr=self.lr, arch=self.arch, seed=self.seed,
                     pretrained=self.pretrained, tasks=tuple(self.tasks) if self.tasks else None, **more)
        sets = dict(parse_set(s) for s in self.set_ or ())
        both = [k for k in sets if named.get(k) is not None and named[k] != sets[k]]
        if both: raise RecipeError(f"--set {both[0]}={sets[both[0]]} contradicts --{both[0].replace('_', '-')} {named[both[0]]}")
        return {**named, **sets}

    def recorded(self, changes: dict) -> dict:
        "The overrides a run records (and a composite's members resolve with): the changes given, and `quick`."
        return {k: v for k, v in dict(changes, quick=self.quick or None).items() if v is not None}

    def runtime(self, base=None):
        "The `Runtime` the speed options give, on top of `base` (a run's own) where given."
        from fastmask.runtime import Runtime, check_precision
        check_precision(self.precision)
        return (base or Runtime()).changed(precision=self.precision, channels_last=self.channels_last,
                                           compile=self.compile or None, cache=False if self.no_cache else None,
                                           num_workers=self.workers, deterministic=self.deterministic or None)

    def build_options(self) -> dict:
        "`RunSpec.build`'s options: data preparation, weights, runtime, tracker."
        return dict(skip_bad=self.skip_bad, fix_labels=self.fix_labels, relabel=self.relabel, weights=self.weights,
                    runtime=self.runtime(), track=self.track)

    def spec(self, recipe, changes: dict | None = None, **more):
        "The run specification of a resolved recipe with every option given."
        from fastmask.runspec import RunSpec
        more = {'out': self.out, **self.build_options(), **more}   # `more` wins, e.g. `data noise --runs DIR` as out
        return RunSpec.build(recipe, self.data, overrides=self.recorded(changes or {}), **more)


def takes(*groups: str):
    "Give a command the options of `groups` (see `GROUPS`) as one `Args` parameter named `o`."
    params = [p for g in groups for p in GROUPS[g]]
    def deco(f):
        sig = inspect.signature(f, eval_str=True)
        own = [p for n, p in sig.parameters.items() if n != 'o']
        def command(*args, **kwargs):
            given = {p.name: kwargs.pop(p.name) for p in params if p.name in kwargs}
            return f(*args, o=Args(given), **kwargs)
        command.__name__, command.__doc__, command.__module__ = f.__name__, f.__doc__, f.__module__
        command.__signature__ = sig.replace(parameters=own + params)
        command.__annotations__ = {p.name: p.annotation for p in own + params}
        return command
    return deco
