"""Search spaces of `fastmask tune`: a small JSON/YAML file or a default per recipe family, as Optuna distributions.

A space maps a key to a spec: `{"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
"bs": {"type": "categorical", "choices": [32, 64]}, "age_cut": {"type": "int", "low": 57, "high": 60}}`.
Keys are Recipe fields (`lr`, `wd`, `bs`, `size`, `epochs`, `age_cut`, `opt`, `loss`, `arch`, `swa_lr`, ...), a
parameter of the recipe's loss as `loss_params.NAME` (e.g. `loss_params.f1_weight` of `ce_f1` / `f1_focal`), a
runner option field (`cutmix_p`, `pseudo_threshold`; the older spelling `extras.NAME` is accepted), or `label_smoothing`:
cross entropy with fastai's label smoothing `eps` (0 is plain cross entropy; for `ce` / `label_smoothing` recipes).
The validation split (`valid_pct`, `split_seed`) is not tunable: every trial is scored on the same people.
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.losses import LOSSES, get_loss
from fastmask.models.backbones import check_arch
from fastmask.optim import get_opt
from fastmask.runners.train import metric_name
from fastmask.recipes import Recipe

__all__ = ['SpaceError', 'need_optuna', 'tunable', 'parse_space', 'load_space', 'default_space', 'suggest',
           'apply_params', 'space_json']

FIXED = ('name', 'description', 'kind', 'tasks', 'members', 'task_overrides', 'report', 'loss_params', 'age_cuts',
         'detectors', 'valid_pct', 'split_seed', 'folds', 'fold', 'fold_kind')
# structured fields, and the validation split every trial must share (k-fold's split of people too)
#: fields that older space files named `extras.NAME`
OLD_EXTRAS = ('cutmix', 'cutmix_p', 'cutmix_old', 'cutmix_cut', 'sampler', 'class_weights', 'pseudo_threshold', 'margin')
KIND_WORDS = dict(int='an integer', float='a number', str='a string', bool='true or false')
SPEC_KEYS = dict(float=('type', 'low', 'high', 'log', 'step'), int=('type', 'low', 'high', 'log', 'step'),
                 categorical=('type', 'choices'))


class SpaceError(FastmaskError, ValueError):
    "A bad search-space file or entry."


def need_optuna():
    "The optuna module, or a one-line MissingExtraError."
    try: import optuna
    except ImportError: raise MissingExtraError('optuna', 'tune', 'fastmask tune') from None
    return optuna


def _loss_args(loss: str) -> list[str]:
    "The parameters of a registered loss (none for an unknown name)."
    import inspect
    return [p for p in inspect.signature(LOSSES[loss]).parameters if p != 'n_classes'] if loss in LOSSES else []


def tunable(recipe: Recipe, losses=None) -> dict[str, tuple[str, bool]]:
    "Every key a space may set on `recipe`: (value kind int/float/str/bool, whether None is allowed)."
    keys = {f.name: (f.type.split('|')[0].strip(), 'None' in f.type) for f in fields(Recipe) if f.name not in FIXED}
    losses = list(losses or [recipe.loss])
    if losses == [recipe.loss] and recipe.loss in ('ce', 'label_smoothing'): keys['label_smoothing'] = ('float', False)
    common = set.intersection(*(set(_loss_args(l)) for l in losses))
    keys.update({f'loss_params.{p}': ('float', False) for p in sorted(common)})
    keys.update({f'extras.{k}': keys[k] for k in OLD_EXTRAS})
    return keys


def _check_value(name: str, v, kind: str, optional: bool) -> str | None:
    "Why `v` cannot be the value of key `name` (None if it can)."
    if v is None: return None if optional else 'not allowed (the field cannot be None)'
    if kind == 'bool': ok = isinstance(v, bool)
    elif kind == 'int': ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind == 'float': ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else: ok = isinstance(v, str)
    if not ok: return f'not {KIND_WORDS[kind]}'
    try:
        if name == 'loss': get_loss(v, 2)
        elif name == 'opt': get_opt(v)
        elif name == 'arch': check_arch(v)
        elif name == 'monitor': metric_name(v)
        elif name == 'schedule' and v not in ('one_cycle', 'constant'): return f"unknown schedule '{v}' (one_cycle or constant)"
    except MissingExtraError: raise
    except FastmaskError as e: return str(e)
    return None


def _param(name: str, spec, keys: dict, where: str):
    "One validated Optuna distribution from a spec; SpaceError naming `where` and the key."
    optuna = need_optuna()
    D = optuna.distributions
    def bad(msg): return SpaceError(f"{where}: field '{name}': {msg}")
    if name not in keys: raise SpaceError(f"{where}: unknown field '{name}' (tunable here: {', '.join(keys)})")
    if not isinstance(spec, dict): raise bad('expected a spec such as {"type": "float", "low": 0.0001, "high": 0.01, "log": true}')
    typ = spec.get('type')
    if typ not in SPEC_KEYS: raise bad(f"type must be float, int or categorical, not {typ!r}")
    extra = [k for k in spec if k not in SPEC_KEYS[typ]]
    if extra: raise bad(f"unknown key '{extra[0]}' for type {typ} (keys: {', '.join(SPEC_KEYS[typ])})")
    kind, optional = keys[name]
    if typ == 'categorical':
        ch = spec.get('choices')
        if not isinstance(ch, list) or not ch: raise bad('choices must be a non-empty list')
        for v in ch:
            why = _check_value(name, v, kind, optional)
            if why: raise bad(f'choice {v!r}: {why}')
        return D.CategoricalDistribution(ch)
    if typ != kind: raise bad(f"takes {KIND_WORDS[kind]}: use type {kind + ' or ' if kind in ('int', 'float') else ''}categorical")
    for k in ('low', 'high'):
        if k not in spec: raise bad(f"type {typ} needs '{k}'")
        why = _check_value(name, spec[k], typ, False)
        if why: raise bad(f'{k} {spec[k]!r}: {why}')
    log, step = spec.get('log', False), spec.get('step')
    if not isinstance(log, bool): raise bad(f'log must be true or false, not {log!r}')
    if step is not None and _check_value(name, step, typ, False): raise bad(f'step {step!r}: not {KIND_WORDS[typ]}')
    try:
        if typ == 'int': return D.IntDistribution(spec['low'], spec['high'], log=log, step=1 if step is None else step)
        return D.FloatDistribution(spec['low'], spec['high'], log=log, step=step)
    except ValueError as e: raise bad(' '.join(str(e).split()))


def parse_space(obj, recipe: Recipe, where: str = 'search space') -> dict:
    "Validate a `{key: spec}` mapping for `recipe`: {key: optuna distribution}; errors name `where` and the key."
    if not isinstance(obj, dict) or not obj:
        raise SpaceError(f'{where}: expected a non-empty mapping of field name to spec, e.g. '
                         '{"lr": {"type": "float", "low": 0.0001, "high": 0.01, "log": true}}')
    loss = obj.get('loss')
    losses = loss.get('choices') if isinstance(loss, dict) and isinstance(loss.get('choices'), list) else None
    keys = tunable(recipe, [l for l in losses if isinstance(l, str)] if losses else None)
    space = {}
    for name, spec in obj.items():
        space[str(name)] = _param(str(name), spec, keys, where)
    return space


def load_space(path, recipe: Recipe) -> dict:
    "Read and validate a JSON or YAML (`.yaml`/`.yml`) search-space file."
    path = Path(path)
    if not path.is_file(): raise SpaceError(f'{path}: file not found')
    text = path.read_text()
    if path.suffix.lower() in ('.yaml', '.yml'):
        try: import yaml
        except ImportError: raise MissingExtraError('pyyaml', 'tune', f'{path}') from None
        try: obj = yaml.safe_load(text)
        except yaml.YAMLError as e: raise SpaceError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    else:
        try: obj = json.loads(text)
        except ValueError as e: raise SpaceError(f'{path}: not valid JSON ({e})') from None
    return parse_space(obj, recipe, str(path))


def default_space(recipe: Recipe, fixed=()) -> dict:
    "The built-in space of a recipe family: only fields that it uses and the command line did not fix (`fixed`)."
    r, spec = recipe, {}
    around = lambda x: dict(type='float', low=float(f'{x / 10:.3g}'), high=min(1.0, float(f'{x * 10:.3g}')), log=True)
    spec['lr'] = around(r.lr)
    spec['wd'] = dict(type='float', low=1e-6, high=1e-1, log=True)
    if r.loss in ('ce', 'label_smoothing'): spec['label_smoothing'] = dict(type='float', low=0.0, high=0.2)
    if 'f1_weight' in _loss_args(r.loss): spec['loss_params.f1_weight'] = dict(type='float', low=0.1, high=0.9)
    if ('all' in r.tasks or 'age' in r.tasks) and not r.age_cuts:
        spec['age_cut'] = dict(type='int', low=57, high=60)
    spec['size'] = dict(type='categorical', choices=sorted({max(32, round(r.size * f / 16) * 16) for f in (0.75, 1, 1.25)}))
    if r.bs >= 16: spec['bs'] = dict(type='categorical', choices=[r.bs // 2, r.bs])
    if r.swa_start is not None:
        spec['swa_lr'] = around(r.swa_lr or r.lr)
    if r.pretrained and r.epochs:     # transfer: epochs with the body frozen first, and the body's share of the rate
        spec['freeze_epochs'] = dict(type='int', low=0, high=2)
        spec['lr_mult'] = dict(type='float', low=5.0, high=200.0, log=True)
    if r.cutmix: spec['cutmix_p'] = dict(type='float', low=0.25, high=1.0)
    if r.kind == 'pseudo': spec['pseudo_threshold'] = dict(type='float', low=0.8, high=0.99)
    spec = {k: v for k, v in spec.items() if k not in set(fixed)}
    if not spec: raise SpaceError(f'recipe {r.name}: the options fix every field of the default search space; pass --space FILE')
    return parse_space(spec, r, f'default search space of {r.name}')


def suggest(trial, name: str, d):
    "Sample key `name` from distribution `d` with the trial's public suggest API."
    D = need_optuna().distributions
    if isinstance(d, D.CategoricalDistribution): return trial.suggest_categorical(name, d.choices)
    if isinstance(d, D.IntDistribution): return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


def apply_params(recipe: Recipe, params: dict) -> Recipe:
    "The recipe with a trial's values: fields (`extras.NAME` is field NAME), `label_smoothing`, `loss_params.NAME`."
    changes, lp = {}, dict(recipe.loss_params)
    for k, v in params.items():
        if k == 'label_smoothing': changes['loss'], lp['eps'] = 'label_smoothing', float(v)
        elif k.startswith('loss_params.'): lp[k[len('loss_params.'):]] = v
        else: changes[k.removeprefix('extras.')] = v
    keep = set(_loss_args(changes.get('loss', recipe.loss)))
    return replace(recipe, **changes, loss_params=tuple((k, v) for k, v in lp.items() if k in keep))


def space_json(space: dict) -> dict:
    "A space as JSON-friendly Optuna distribution strings (stored with the study, compared when workers join)."
    D = need_optuna().distributions
    return {k: D.distribution_to_json(d) for k, d in space.items()}
