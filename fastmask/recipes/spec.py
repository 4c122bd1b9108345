"""Recipe specs: `name[field=value,...]`, a registered recipe with its own settings, as studies and ensembles name
their members (`cpu_split_lite0[bn=train]`, `cpu_split_lite0[seed=1]`).

A variant runs under its own name (`cpu_split_lite0~bn=train`) so that its run folders never mix with the plain
recipe's, and its description says what changed.
"""
from __future__ import annotations

import re
from dataclasses import replace

from fastmask.recipes.registry import Recipe, RecipeError, parse_set, resolve

__all__ = ['parse_spec', 'variant', 'merge_task_overrides', 'resolve_spec', 'spec_name']

_SPEC = re.compile(r'^(?P<name>[^\[\]]+)(?:\[(?P<sets>[^\[\]]*)\])?$')


def parse_spec(spec: str) -> tuple[str, dict]:
    "`name[field=value,...]` as (recipe name, changes); a one-line RecipeError for a malformed spec."
    m = _SPEC.match(str(spec).strip())
    if not m: raise RecipeError(f"recipe '{spec}': expected NAME or NAME[field=value,...]")
    changes = dict(parse_set(s) for s in (m['sets'] or '').split(',') if s.strip())
    if 'task_overrides' in changes:   # task:field:value, e.g. age:loss:f1
        v = changes['task_overrides']
        parts = str(v[0] if isinstance(v, tuple) else v).split(':')
        if len(parts) != 3: raise RecipeError(f"recipe '{spec}': task_overrides is TASK:FIELD:VALUE (e.g. age:loss:f1)")
        t, k, val = parts
        changes['task_overrides'] = ((t, (parse_set(f'{k}={val}'),)),)
    return m['name'].strip(), changes


def spec_name(spec: str) -> str:
    "A spec as one display name, e.g. `cpu_split_lite0[bn=train]`."
    return ' '.join(str(spec).split())


def variant(r: Recipe, changes: dict) -> Recipe:
    "The recipe under its variant name (`recipe~bn=train`) with what changed in its description; `r` when nothing did."
    if not changes: return r
    word = lambda v: ':'.join(map(str, v)) if isinstance(v, tuple) else v   # `calibrate=age`, not `calibrate=age,`
    tag = ','.join(f'{k}={word(v)}' for k, v in changes.items() if k != 'task_overrides')
    if 'task_overrides' in changes: tag += ',' + ','.join(f'{t}.{k}={v}' for t, ch in changes['task_overrides'] for k, v in ch)
    tag = re.sub(r'[^A-Za-z0-9_.=,-]+', '', tag.strip(','))
    return replace(r, name=f'{r.name}~{tag}', description=f"{r.description} [changed: {tag.replace(',', ', ')}]")


def merge_task_overrides(base: tuple, more: tuple) -> tuple:
    "`task_overrides` of `base` with those of `more` on top: other tasks' changes are kept, a task's fields merged."
    merged = {t: dict(ch) for t, ch in base}
    for t, ch in more: merged.setdefault(t, {}).update(dict(ch))
    return tuple((t, tuple(ch.items())) for t, ch in merged.items())


def resolve_spec(spec: str, quick: bool = False, **overrides) -> Recipe:
    """The recipe of a spec with shared overrides below its own settings (`resolve` of the name, then the variant);
    a spec's `task_overrides` add to the recipe's own (`cpu_split_lite0[task_overrides=age:loss:f1]` keeps the mask
    model's settings)."""
    name, changes = parse_spec(spec)
    r = resolve(name, quick=quick, **{**overrides, **changes})
    if 'task_overrides' in changes:
        r = replace(r, task_overrides=merge_task_overrides(resolve(name, quick=quick, **overrides).task_overrides,
                                                            changes['task_overrides']))
    return variant(r, changes)
