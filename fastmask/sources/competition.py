"""Read the competition layout (train/train.csv, train/images, eval/info.csv, eval/truth.csv) into DataFrames.

Each reader is strict (the first problem raises a one-line `LayoutError`) or, given a `problems` collector
(`sources.problems.Problems`, a `CheckReport`), lenient: it records every problem and returns the usable rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.errors import LayoutError
from fastmask.labels import (DEFAULT_AGE_CUT, IMAGE_EXTS, LabelError, age_group, encode, is_hidden, mask_from_stem,
                             parse_gender, parse_person_folder)
from fastmask.sources.datasource import DataSource
from fastmask.sources.labelfix import noise_reason
from fastmask.sources.problems import flag, read_table

__all__ = ['read_train', 'read_eval', 'read_truth', 'read_layout', 'add_labels', 'person_photos', 'TRAIN_COLUMNS',
           'PHOTO_STEMS']

TRAIN_COLUMNS = ['path', 'person', 'folder', 'photo', 'mask', 'gender', 'age', 'race', 'age_group', 'label']
PHOTO_STEMS = tuple(f'mask{i}' for i in range(1, 6)) + ('incorrect_mask', 'normal')
_PHOTOS = 'photos are mask1..mask5, incorrect_mask, normal .jpg/.jpeg/.png'


def person_photos(folder: Path, problems=None) -> dict[str, Path]:
    "Map photo stem -> file of a person folder, ignoring hidden files; other files and second photos are problems."
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if is_hidden(f.name): continue
        stem = f.stem.lower()
        if f.is_dir() or f.suffix.lower() not in IMAGE_EXTS:
            flag(problems, f, 'extra-file', f"unexpected {'folder' if f.is_dir() else 'file'} ({_PHOTOS})")
        elif stem not in PHOTO_STEMS:
            flag(problems, f, 'extra-file', f'unexpected file ({_PHOTOS})',
                 strict=f"{f}: '{stem}' is not a mask photo name (mask1..mask5, incorrect_mask, normal)")
        elif stem in found:
            flag(problems, f, 'duplicate-photo', f'second photo {stem} (also {found[stem].name})',
                 strict=f'{folder}: two photos named {stem} ({found[stem].name}, {f.name})')
        else: found[stem] = f
    return found


def _name_kind(msg: str) -> str:
    "The problem kind of a person folder name that does not parse."
    return 'gender' if 'not a gender' in msg else 'age' if 'age' in msg and 'out of range' in msg else 'folder-name'


def _csv_mismatch(row: dict, person) -> str | None:
    "How train.csv's id/gender/age columns disagree with the folder name, if they do."
    bad = []
    if row.get('id') and str(row['id']) != person.id: bad.append(f"id {row['id']} != {person.id}")
    if row.get('gender'):
        try: g = parse_gender(row['gender'])
        except LabelError: g = None
        if g != person.gender: bad.append(f"gender {row['gender']} disagrees with the folder name")
    if row.get('age') and str(row['age']).strip() != str(person.age): bad.append(f"age {row['age']} != {person.age}")
    return '; '.join(bad) or None


def read_train(root, age_cut: int = DEFAULT_AGE_CUT, problems=None) -> pd.DataFrame:
    "One row per training photo (`TRAIN_COLUMNS`); lenient with `problems`: the photos of the people that read well."
    root = Path(root)
    csv, images = root / 'train' / 'train.csv', root / 'train' / 'images'
    people = read_table(csv, ['path'], problems)
    if people is not None and people.empty: flag(problems, csv, 'csv', 'no people listed')
    if not images.is_dir(): flag(problems, images, 'no-folder', 'training images folder does not exist')
    rows, listed, seen = [], set(), {}
    for i, r in enumerate([] if people is None else people.to_dict('records')):
        name, where = r['path'], f'{csv} row {i + 2}'
        if name in listed:
            flag(problems, where, 'duplicate-row', f'folder {name} is listed twice')
            continue
        listed.add(name)
        folder = images / name
        try: person = parse_person_folder(name)
        except LabelError as e:
            flag(problems, folder, _name_kind(str(e)), str(e), strict=f'{where}: {e}')
            continue
        if not folder.is_dir():
            flag(problems, folder, 'no-folder', f'folder listed in train.csv row {i + 2} does not exist')
            continue
        mismatch = _csv_mismatch(r, person)
        if mismatch:
            flag(problems, folder, 'csv-mismatch', f'train.csv row {i + 2}: {mismatch}')
            continue
        if person.id in seen:
            flag(problems, folder, 'duplicate-id', f'person id {person.id} also has folder {seen[person.id]}',
                 strict=f'{csv}: person id {person.id} appears twice')
            continue
        seen[person.id] = name
        photos = person_photos(folder, problems)
        missing = [s for s in PHOTO_STEMS if s not in photos]
        if missing: flag(problems, folder, 'missing-photo', f"missing photo(s) {', '.join(missing)}", skip=False)
        why = noise_reason(person.id)
        if why: flag(problems, folder, 'label-noise', why, severity='notice', skip=False)
        rows += [(str(f), person.id, name, s, mask_from_stem(s), person.gender, person.age, person.race)
                 for s, f in photos.items()]
    for f in sorted(images.iterdir()) if images.is_dir() else []:
        if is_hidden(f.name) or f.name in listed: continue
        flag(problems, f, 'no-row', 'folder is not listed in train.csv' if f.is_dir() else 'unexpected file in train/images')
    return add_labels(pd.DataFrame(rows, columns=TRAIN_COLUMNS[:-2]), age_cut)


def add_labels(df: pd.DataFrame, age_cut: int = DEFAULT_AGE_CUT) -> pd.DataFrame:
    "Add `age_group` (at `age_cut`) and the 18-class `label` columns."
    df = df.copy()
    df['age_group'] = age_group(df['age'].to_numpy(), age_cut)
    df['label'] = encode(df['mask'].to_numpy(), df['gender'].to_numpy(), df['age_group'].to_numpy())
    return df


def read_eval(root, problems=None) -> pd.DataFrame | None:
    "Eval rows (ImageID, path) in info.csv order, or None without eval/info.csv; lenient: the rows whose image exists."
    root = Path(root)
    csv = root / 'eval' / 'info.csv'
    if not csv.exists(): return None
    info = read_table(csv, ['ImageID'], problems)
    if info is None: return None
    paths = [root / 'eval' / 'images' / i for i in info['ImageID']]
    there = [p.is_file() for p in paths]
    for i, p in enumerate(paths):
        if not there[i]: flag(problems, p, 'eval-missing', f'image listed in eval/info.csv row {i + 2} does not exist',
                              strict=f'{p}: image listed in {csv} does not exist ({there.count(False)} missing in all)')
    return pd.DataFrame({'ImageID': info['ImageID'], 'path': [str(p) for p in paths]})[there].reset_index(drop=True)


def read_truth(path, problems=None) -> pd.DataFrame | None:
    "A truth or submission CSV (ImageID, ans) with integer classes 0..17; lenient: None or the good rows."
    path = Path(path)
    df = read_table(path, ['ImageID', 'ans'], problems)
    if df is None: return None
    ans = pd.to_numeric(df['ans'], errors='coerce')
    bad = (ans.isna() | (ans < 0) | (ans > 17) | (ans != ans.round())).to_numpy()
    for i in np.flatnonzero(bad):
        flag(problems, f'{path} row {i + 2}', 'truth', f"ans '{df['ans'].iloc[i]}' is not a class 0..17")
    return pd.DataFrame({'ImageID': df['ImageID'][~bad], 'ans': ans[~bad].astype(int)}).reset_index(drop=True)


def read_layout(root, age_cut: int = DEFAULT_AGE_CUT, problems=None) -> DataSource:
    "A DataSource of a competition-layout folder (train rows, eval rows, and eval truth when present)."
    root = Path(root)
    if not root.exists(): raise LayoutError(f'{root}: data folder does not exist')
    folders = any((root / d).is_dir() for d in ('train', 'eval'))  # a lenient reader reports a broken layout
    if not (root / 'train' / 'train.csv').exists() and (problems is None or not folders):
        raise LayoutError(f'{root}: not a competition layout (no train/train.csv) and not a labels .csv')
    train, truth = read_train(root, age_cut, problems), root / 'eval' / 'truth.csv'
    return DataSource(root, train, read_eval(root, problems), read_truth(truth, problems) if truth.exists() else None)
