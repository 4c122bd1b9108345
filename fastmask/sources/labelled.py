"""Any labelled CSV as training data: `path` plus any of mask, gender, age (years or group), person/group/photo.

`read_labels_csv` is strict (the first bad row raises a one-line `LayoutError`) or, given a `problems` collector,
lenient: it records every bad row and returns the others.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import LayoutError
from fastmask.sources.datasource import DataSource
from fastmask.sources.problems import flag, read_table
from fastmask.labels import AGES, DEFAULT_AGE_CUT, LabelError, age_group, encode, mask_from_stem, parse_gender

__all__ = ['CSVSource', 'read_labels_csv', 'parse_mask', 'parse_age', 'GROUP_COLUMNS']

GROUP_COLUMNS = ('person', 'group', 'photo')
_MASK_NAMES = {0: ('wear', 'mask', 'masked', 'with_mask', 'correct', 'mask_weared_correct', 'worn'),
               1: ('incorrect', 'incorrect_mask', 'mask_weared_incorrect', 'improper', 'wrong'),
               2: ('not_wear', 'notwear', 'no_mask', 'nomask', 'without_mask', 'unmasked', 'normal', 'none')}
_MASK = {n: k for k, names in _MASK_NAMES.items() for n in names}
_GROUP = {**{a: i for i, a in enumerate(AGES)}, '30-60': 1, '<=29': 0, '60+': 2, '>60': 2, 'young': 0, 'middle': 1,
          'old': 2}
_BIN_RE = re.compile(r'^(\d{1,3})\s*-\s*(\d{1,3})$')
_OPEN_RE = re.compile(r'^(?:more than\s*|over\s*|>=?\s*)(\d{1,3})\+?$|^(\d{1,3})\s*\+$')


def parse_mask(s) -> int:
    "Mask state 0/1/2 from an int or a name (wear / incorrect / not_wear and common synonyms, mask1..normal)."
    t = str(s).strip().lower().replace('-', '_').replace(' ', '_')
    if t in ('0', '1', '2'): return int(t)
    if t in _MASK: return _MASK[t]
    try: return mask_from_stem(t)
    except LabelError: pass
    raise LabelError(f"'{s}' is not a mask state (wear, incorrect, not_wear or 0/1/2)")


def parse_age(s) -> tuple[float, int | None]:
    "(age in years or NaN, age group or None) from years (`42`), a group (`<30`, `30-59`, `>=60`) or a bin (`50-59`)."
    t = str(s).strip().lower()
    if re.fullmatch(r'\d{1,3}(\.0+)?', t):
        a = int(float(t))
        if not 0 < a < 120: raise LabelError(f"age {a} out of range 1..119")
        return float(a), None
    if t in _GROUP: return np.nan, _GROUP[t]
    m, o = _BIN_RE.match(t), _OPEN_RE.match(t)
    if m:
        lo, hi = int(m[1]), int(m[2])
        if lo > hi: raise LabelError(f"age bin '{s}' runs backwards")
    elif o: lo, hi = int(o[1] or o[2]), 200
    else: raise LabelError(f"'{s}' is not an age (years, <30 / 30-59 / >=60, or a bin like 50-59)")
    g_lo, g_hi = age_group(lo), age_group(min(hi, 119))
    if g_lo != g_hi: raise LabelError(f"age bin '{s}' straddles a cut point (30 or 60): its group is unknown")
    return np.nan, int(g_lo)


def _column(df: pd.DataFrame, names) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _group_index(v) -> int:
    if str(v).strip() not in ('0', '1', '2'): raise LabelError(f"age group '{v}' is not 0, 1 or 2")
    return int(str(v).strip())


def _parsers(df: pd.DataFrame) -> dict:
    "The label columns of a labels CSV and their parsers: mask, gender, and `age` or `age_group` -> (years, group)."
    acol = _column(df, ('age', 'age_group'))
    age = parse_age if acol == 'age' else lambda v: (np.nan, _group_index(v)) if str(v).strip().isdigit() else parse_age(v)
    return {c: fn for c, fn in (('mask', parse_mask), ('gender', parse_gender), (acol, age)) if c in df.columns}


def _parse_row(r: dict, parsers: dict) -> tuple[dict, tuple | None]:
    "(the parsed labels of a row, None) or ({}, (column, reason)) at its first bad label."
    out = {}
    for col, fn in parsers.items():
        if str(r[col]).strip() == '': return {}, (col, f'empty {col}')
        try: out[col] = fn(r[col])
        except LabelError as e: return {}, (col, str(e))
    return out, None


class CSVSource(DataSource):
    "A DataSource read from a labels CSV: the age task is trainable from years or from groups alone."
    @property
    def tasks(self) -> tuple[str, ...]:
        df = self.train
        ts = [t for t in ('mask', 'gender') if t in df.columns and df[t].notna().all()]
        if 'age_group' in df.columns and df['age_group'].notna().all(): ts.append('age')
        return (('all',) if len(ts) == 3 else ()) + tuple(ts)


def read_labels_csv(path, age_cut: int = DEFAULT_AGE_CUT, problems=None) -> CSVSource:
    "A CSVSource from a CSV with `path` (relative to the CSV) and any of mask, gender, age, person/group/photo columns."
    csv = Path(path)
    if not csv.is_file(): raise LayoutError(f'{csv}: file not found')
    df, out = read_table(csv, (), problems, lower=True), pd.DataFrame(columns=['path', 'person', 'folder', 'photo'])
    if df is None: return CSVSource(csv, out, None, None, kind='csv')
    if 'path' not in df.columns: flag(problems, csv, 'csv', f"needs a 'path' column (has {', '.join(df.columns)})")
    elif df.empty: flag(problems, csv, 'csv', 'no rows')
    elif not {'mask', 'gender', 'age', 'age_group'} & set(df.columns):
        flag(problems, csv, 'csv', 'no label column (mask, gender, age or age_group)')
    else: out = _rows(csv, df, age_cut, problems)
    return CSVSource(csv, out, None, None, kind='csv')


def _rows(csv: Path, df: pd.DataFrame, age_cut: int, problems) -> pd.DataFrame:
    "The training rows of a labels CSV, each bad row flagged (strict: the first raises)."
    base, gcol, parsers = csv.resolve().parent, _column(df, GROUP_COLUMNS), _parsers(df)
    paths = [Path(p.strip()) if Path(p.strip()).is_absolute() else base / p.strip() for p in df['path']]
    there = [p.is_file() for p in paths]
    n_missing, seen, keep, labels = there.count(False), set(), [], []
    for i, r in enumerate(df.to_dict('records')):
        p, bad, got = paths[i], None, {}
        if not r['path'].strip(): bad = ('csv', 'empty path')
        elif str(p) in seen: bad = ('duplicate-row', f'{p} is listed twice')
        elif not there[i]: bad = ('no-folder', f'image {p} does not exist')
        elif gcol and not r[gcol].strip(): bad = ('csv', f'empty {gcol}')
        else: got, bad = _parse_row(r, parsers)
        seen.add(str(p))
        where = f'{csv} row {i + 2}'
        if not bad: keep.append(i); labels.append(got)
        elif bad[0] != 'no-folder': flag(problems, where, *bad)
        else: flag(problems, where, *bad, strict=f'{where}: {bad[1]} ({n_missing} of {len(paths)} missing)')
    out = pd.DataFrame({'path': [str(paths[i]) for i in keep]})
    out['person'] = [df[gcol].iloc[i].strip() for i in keep] if gcol else [f'row{i + 2}' for i in keep]
    out['folder'] = [paths[i].parent.name for i in keep]
    out['photo'] = [paths[i].stem for i in keep]
    for col in ('mask', 'gender'):
        if col in parsers: out[col] = np.array([l[col] for l in labels], dtype=int)
    acol = next((c for c in parsers if c.startswith('age')), None)
    if acol:
        parsed = [l[acol] for l in labels]
        out['age'] = np.array([a for a, _ in parsed], dtype=float)
        out['age_group'] = np.array([age_group(int(a), age_cut) if g is None else g for a, g in parsed], dtype=int)
    if 'race' in df.columns: out['race'] = df['race'].to_numpy()[keep]
    if not {'mask', 'gender', 'age_group'} - set(out.columns):
        out['label'] = encode(out['mask'].to_numpy(), out['gender'].to_numpy(), out['age_group'].to_numpy())
    return out
