"""Labelled real faces for practice data: UTKFace-style names or labels tables (AAF, FairFace, any CSV), one source or
several pooled into one mix."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fastmask import labels
from fastmask.errors import LayoutError
from fastmask.sources.labelled import parse_age

__all__ = ['FORMATS', 'UTK_RACES', 'Face', 'utkface_faces', 'table_faces', 'source_format', 'read_faces',
           'pooled_faces', 'draw_mix']

FORMATS = ('auto', 'utkface', 'fairface', 'aaf', 'csv')   # aaf, fairface: labels CSVs (path, gender, age)
UTK_RACES = ('White', 'Black', 'Asian', 'Indian', 'Others')
_UTK_RE = re.compile(r'^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<stamp>\d+)')


@dataclass(frozen=True)
class Face:
    "One labelled source photo."
    path: Path
    gender: int
    age: int
    race: str = 'Unknown'


def utkface_faces(folder) -> tuple[list[Face], Counter]:
    "Faces from UTKFace names `{age}_{gender}_{race}_{datetime}.jpg.chip.jpg`; malformed names counted, never guessed."
    folder, skipped, faces = Path(folder), Counter(), []
    if not folder.is_dir(): raise LayoutError(f'{folder}: faces folder does not exist')
    for f in sorted(folder.rglob('*')):
        if not f.is_file() or labels.is_hidden(f.name) or f.suffix.lower() not in labels.IMAGE_EXTS: continue
        m = _UTK_RE.match(f.name)
        if not m: skipped['malformed name'] += 1; continue
        age = int(m['age'])
        if not 0 < age < 120: skipped['age out of range'] += 1; continue
        faces.append(Face(f, int(m['gender']), age, UTK_RACES[int(m['race'])]))
    return faces, skipped


def _table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == '.json': df = pd.read_json(path, dtype=False).astype(str)
        else: df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e: raise LayoutError(f'{path}: cannot read ({type(e).__name__}: {e})') from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    return df


def table_faces(path) -> tuple[list[Face], Counter]:
    "Faces from a CSV/JSON with path (or file), gender and age (years, or bins like `50-59` that fit one age group)."
    path, skipped, faces = Path(path), Counter(), []
    if path.is_dir():
        cands = sorted(path.glob('*.csv')) + sorted(path.glob('*.json'))
        if len(cands) != 1: raise LayoutError(f'{path}: give the labels CSV/JSON file (found {len(cands)} candidates)')
        path = cands[0]
    if not path.is_file(): raise LayoutError(f'{path}: labels file does not exist')
    df = _table(path)
    col = next((c for c in ('path', 'file', 'image', 'filename') if c in df.columns), None)
    missing = [n for n, c in (('path (or file)', col), ('gender', 'gender' in df.columns or None),
                              ('age', 'age' in df.columns or None)) if c is None]
    if missing: raise LayoutError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    base = path.resolve().parent
    for _, r in df.iterrows():
        f = Path(str(r[col]).strip())
        f = f if f.is_absolute() else base / f
        try: gender = labels.parse_gender(r['gender'])
        except labels.LabelError: skipped['bad gender'] += 1; continue
        try: years, group = parse_age(r['age'])
        except labels.LabelError: skipped['bad age'] += 1; continue
        if not f.is_file(): skipped['missing image'] += 1; continue
        age = int(years) if group is None else (20, 45, 65)[group]  # a bin's group, kept at both age cuts (57, 60)
        faces.append(Face(f, gender, age, str(r.get('race', 'Unknown')).replace('_', ' ').strip() or 'Unknown'))
    return faces, skipped


def source_format(faces, fmt: str = 'auto') -> str:
    "The format of a faces source: `fmt`, or for `auto` a labels file (or a folder holding one) as a table, else UTKFace names."
    if fmt not in FORMATS: raise LayoutError(f"unknown faces format '{fmt}' (one of {', '.join(FORMATS)})")
    if fmt != 'auto': return 'utkface' if fmt == 'utkface' else 'csv'
    p = Path(faces)
    if p.is_file(): return 'csv'
    tables = p.is_dir() and any(f.suffix.lower() in ('.csv', '.json') for f in p.iterdir())
    return 'csv' if tables and not any(_UTK_RE.match(f.name) for f in p.iterdir()) else 'utkface'


def read_faces(faces, fmt: str = 'auto') -> tuple[list[Face], Counter]:
    "Labelled faces of a folder/file in one of `FORMATS`, and the count of skipped inputs per reason."
    return utkface_faces(faces) if source_format(faces, fmt) == 'utkface' else table_faces(faces)


def pooled_faces(sources, ages: tuple[int, int] | None) -> tuple[list[tuple[int, Face]], list[dict]]:
    "(source index, face) of every usable face of several sources, and per source what was read and kept."
    pool, info = [], []
    for k, (faces, fmt) in enumerate(sources):
        found, skipped = read_faces(faces, fmt)
        kept = [f for f in found if ages is None or ages[0] <= f.age <= ages[1]]
        pool += [(k, f) for f in kept]
        info.append(dict(source=str(faces), format=source_format(faces, fmt), usable_faces=len(kept),
                         outside_ages=len(found) - len(kept), skipped=dict(skipped)))
    return pool, info


def draw_mix(pool: list[tuple[int, Face]], n_sources: int, n: int, seed: int, balance: bool) -> list[tuple[int, Face]]:
    """`n` faces of the pool in a seeded order: uniformly from all (each source in proportion to its faces), or with
    `balance` as evenly over the sources as their sizes allow."""
    order = [pool[int(i)] for i in np.random.default_rng(seed).permutation(len(pool))]
    if not balance or n_sources == 1: return order[:n]
    by = [[x for x in order if x[0] == k] for k in range(n_sources)]
    quota, left = [0] * n_sources, n
    while left:                                                        # water-filling: equal shares, capped by size
        open_ = [k for k in range(n_sources) if quota[k] < len(by[k])]
        share = max(1, left // len(open_))
        for k in open_:
            add = min(share, len(by[k]) - quota[k], left)
            quota[k], left = quota[k] + add, left - add
            if not left: break
    chosen = [x for k in range(n_sources) for x in by[k][:quota[k]]]
    return [chosen[int(i)] for i in np.random.default_rng([seed, 1]).permutation(len(chosen))]   # sources interleaved
