"""Any labelled CSV as training data: `path` plus any of mask, gender, age (years or group), person/group/photo."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import LayoutError
from fastmask.sources.datasource import DataSource
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


def _parse_col(df: pd.DataFrame, col: str, fn, csv: Path) -> list:
    "Apply a parser to a column; one-line LayoutError naming file, row and problem."
    out = []
    for i, v in enumerate(df[col]):
        if str(v).strip() == '': raise LayoutError(f'{csv} row {i + 2}: empty {col}')
        try: out.append(fn(v))
        except LabelError as e: raise LayoutError(f'{csv} row {i + 2}: {e}') from None
    return out


def _ages(df: pd.DataFrame, csv: Path, age_cut: int) -> tuple[np.ndarray, np.ndarray] | None:
    "(ages in years, NaN where only the group is known; age groups) from an `age` and/or `age_group` column."
    col = _column(df, ('age', 'age_group'))
    if col is None: return None
    parsed = _parse_col(df, col, lambda v: parse_age(v) if col == 'age' or not str(v).strip().isdigit()
                        else (np.nan, _group_index(v)), csv)
    years = np.array([a for a, _ in parsed], dtype=float)
    groups = np.array([age_group(int(a), age_cut) if g is None else g for a, g in parsed], dtype=int)
    return years, groups


def _group_index(v) -> int:
    g = int(str(v).strip())
    if g not in (0, 1, 2): raise LabelError(f"age group '{v}' is not 0, 1 or 2")
    return g


class CSVSource(DataSource):
    "A DataSource read from a labels CSV: the age task is trainable from years or from groups alone."
    @property
    def tasks(self) -> tuple[str, ...]:
        df = self.train
        ts = [t for t in ('mask', 'gender') if t in df.columns and df[t].notna().all()]
        if 'age_group' in df.columns and df['age_group'].notna().all(): ts.append('age')
        return (('all',) if len(ts) == 3 else ()) + tuple(ts)


def read_labels_csv(path, age_cut: int = DEFAULT_AGE_CUT):
    "A DataSource from a CSV with a `path` column (relative to the CSV) and any of mask, gender, age, person/group."
    csv = Path(path)
    if not csv.is_file(): raise LayoutError(f'{csv}: file not found')
    try: df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as e: raise LayoutError(f'{csv}: cannot read CSV ({type(e).__name__}: {e})') from None
    df.columns = [c.strip().lower() for c in df.columns]
    if 'path' not in df.columns: raise LayoutError(f"{csv}: needs a 'path' column (has {', '.join(df.columns)})")
    if df.empty: raise LayoutError(f'{csv}: no rows')
    base = csv.resolve().parent
    paths = [Path(p.strip()) if Path(p.strip()).is_absolute() else base / p.strip() for p in df['path']]
    empty = [i for i, p in enumerate(df['path']) if not p.strip()]
    if empty: raise LayoutError(f'{csv} row {empty[0] + 2}: empty path')
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        raise LayoutError(f'{csv} row {missing[0] + 2}: image {paths[missing[0]]} does not exist '
                          f'({len(missing)} of {len(paths)} missing)')
    out = pd.DataFrame({'path': [str(p) for p in paths]})
    gcol = _column(df, GROUP_COLUMNS)
    out['person'] = df[gcol].str.strip().to_numpy() if gcol else [f'row{i + 2}' for i in range(len(df))]
    if gcol:
        blank = np.flatnonzero(out['person'].to_numpy() == '')
        if len(blank): raise LayoutError(f'{csv} row {blank[0] + 2}: empty {gcol}')
    out['folder'] = [p.parent.name for p in paths]
    out['photo'] = [p.stem for p in paths]
    if 'mask' in df.columns: out['mask'] = _parse_col(df, 'mask', parse_mask, csv)
    if 'gender' in df.columns: out['gender'] = _parse_col(df, 'gender', parse_gender, csv)
    ages = _ages(df, csv, age_cut)
    if ages is not None: out['age'], out['age_group'] = ages
    if 'race' in df.columns: out['race'] = df['race'].to_numpy()
    if not {'mask', 'gender', 'age_group'} - set(out.columns):
        out['label'] = encode(out['mask'].to_numpy(), out['gender'].to_numpy(), out['age_group'].to_numpy())
    if not {'mask', 'gender', 'age_group'} & set(out.columns):
        raise LayoutError(f"{csv}: no label column (mask, gender, age or age_group)")
    return CSVSource(csv, out, None, None, kind='csv')
