"""`--relabel FILE`: train with a reviewed relabel file (the `relabel.csv` template of `fastmask data noise`).

A relabel file has the columns `task`, `label` and `person` (gender and age: every photo of the person changes) or
`path` (mask: that photo changes; relabel both the `incorrect_mask` and the `normal` photo of a person to swap them).
`path` is absolute or relative to the data folder (a labels CSV: to its folder). Rows with an empty `label` keep the
given label; other columns (`given`, `suggested`, `score`, ...) are ignored. An age label is years (`42`) or a group
(`<30`, `30-59`, `>=60`), stored as a typical age of the group (`AGE_YEARS`: it lies in the group at any age cut
from 46 to 60) where the data has ages in years.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import LayoutError
from fastmask.labels import AGES, DEFAULT_AGE_CUT, GENDERS, MASKS, LabelError, age_group, encode, parse_gender
from fastmask.sources.labelled import parse_age, parse_mask

__all__ = ['RelabelError', 'AGE_YEARS', 'RELABEL_TASKS', 'file_sha256', 'read_relabel', 'apply_relabel']

#: the age stored for an age-group label: inside its group at every age cut from 46 to 60
AGE_YEARS = (25, 45, 60)
RELABEL_TASKS = ('mask', 'gender', 'age')


class RelabelError(LayoutError):
    "A relabel file that cannot be applied: missing columns, an unknown person or photo, a bad label."


def file_sha256(path) -> str:
    "sha256 of a file's bytes."
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _parse(task: str, value: str):
    "The new label of one row: mask/gender index, or (years or None, age group)."
    if task == 'mask': return parse_mask(value)
    if task == 'gender': return parse_gender(value)
    years, group = parse_age(value)
    return (None, group) if np.isnan(years) else (int(years), None)


def read_relabel(path) -> list[dict]:
    "The rows of a relabel file that set a label: `row` (file line), `task`, `key` (person or path), `value`."
    path = Path(path)
    if not path.is_file(): raise RelabelError(f'{path}: relabel file not found')
    try: df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e: raise RelabelError(f'{path}: cannot read CSV ({type(e).__name__}: {e})') from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in ('task', 'label') if c not in df.columns]
    if not {'person', 'path'} & set(df.columns): missing.append('person or path')
    if missing: raise RelabelError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    rows = []
    for i, r in enumerate(df.to_dict('records')):
        where, label = f'{path} row {i + 2}', str(r['label']).strip()
        if not label: continue
        task = str(r['task']).strip().lower()
        if task not in RELABEL_TASKS: raise RelabelError(f"{where}: unknown task '{r['task']}' (mask, gender or age)")
        col = 'path' if task == 'mask' else 'person'
        key = str(r.get(col, '')).strip()
        if not key: raise RelabelError(f'{where}: a {task} relabel needs a {col}')
        try: value = _parse(task, label)
        except LabelError as e: raise RelabelError(f'{where}: {e}') from None
        rows.append(dict(row=i + 2, task=task, key=key, value=value))
    return rows


def _norm(p) -> str: return os.path.normcase(os.path.realpath(p))


def apply_relabel(df: pd.DataFrame, path, root, age_cut: int = DEFAULT_AGE_CUT) -> tuple[pd.DataFrame, dict]:
    "Apply a relabel file to training rows; return the changed copy and the record for config.json."
    path, root = Path(path), Path(root)
    rows, df = read_relabel(path), df.copy()
    base = root.parent if root.suffix.lower() == '.csv' else root          # a labels CSV: paths relative to its folder
    by_path = {_norm(p): i for i, p in enumerate(df['path'])}
    people = df['person'].astype(str).to_numpy() if 'person' in df.columns else None
    changes = []
    for r in rows:
        where, task = f"{path} row {r['row']}", r['task']
        if task not in df.columns and not (task == 'age' and 'age_group' in df.columns):
            raise RelabelError(f'{where}: the data has no {task} labels')
        if task == 'mask':
            p = Path(r['key'])
            i = by_path.get(_norm(p if p.is_absolute() else base / p))
            if i is None: raise RelabelError(f"{where}: unknown photo '{r['key']}' (not a training photo of {root})")
            sel = np.zeros(len(df), bool)
            sel[i] = True
        else:
            if people is None: raise RelabelError(f'{where}: the data has no person column')
            sel = people == r['key']
            if not sel.any(): raise RelabelError(f"{where}: unknown person '{r['key']}'")
        change = _set(df, sel, task, r['value'], age_cut)
        if change: changes.append(dict(row=r['row'], task=task, key=r['key'], rows=int(sel.sum()), **change))
    if changes and 'label' in df.columns and {'mask', 'gender', 'age_group'} <= set(df.columns):
        df['label'] = encode(df['mask'].to_numpy(), df['gender'].to_numpy(), df['age_group'].to_numpy())
    return df, dict(file=str(path.resolve()), sha256=file_sha256(path), changes=len(changes), label_changes=changes)


def _set(df: pd.DataFrame, sel: np.ndarray, task: str, value, age_cut: int) -> dict | None:
    "Set one task's label on the selected rows; the change as {old, new}, or None when nothing changes."
    if task in ('mask', 'gender'):
        names = MASKS if task == 'mask' else GENDERS
        old = int(df.loc[sel, task].iloc[0])
        if (df.loc[sel, task].astype(int) == value).all(): return None
        df.loc[sel, task] = value
        return dict(old=names[old], new=names[value])
    years, group = value
    has_years = 'age' in df.columns and df.loc[sel, 'age'].notna().all()
    old_group = df.loc[sel, 'age_group'].iloc[0] if 'age_group' in df.columns else age_group(df.loc[sel, 'age'].iloc[0], age_cut)
    old = f"{df.loc[sel, 'age'].iloc[0]:g}" if has_years else AGES[int(old_group)]
    if years is None and has_years: years = AGE_YEARS[group]  # the recipe's age cut is unknown here: a typical age
    if years is not None:
        if has_years and (df.loc[sel, 'age'] == years).all(): return None
        df.loc[sel, 'age'] = years
        group = age_group(years, age_cut)
    elif (df.loc[sel, 'age_group'] == group).all(): return None
    if 'age_group' in df.columns: df.loc[sel, 'age_group'] = group
    return dict(old=old, new=str(years) if years is not None else AGES[group])
