"""Read the competition layout (train/train.csv, train/images, eval/info.csv) into DataFrames."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fastmask.errors import LayoutError
from fastmask.sources.datasource import DataSource
from fastmask.labels import (DEFAULT_AGE_CUT, IMAGE_EXTS, LabelError, age_group, encode, is_hidden, mask_from_stem,
                     parse_person_folder)

__all__ = ['read_train', 'read_eval', 'read_truth', 'read_layout', 'TRAIN_COLUMNS']

TRAIN_COLUMNS = ['path', 'person', 'folder', 'photo', 'mask', 'gender', 'age', 'race', 'age_group', 'label']
_PHOTO_STEMS = [f'mask{i}' for i in range(1, 6)] + ['incorrect_mask', 'normal']


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    "Read a CSV as strings; one-line error if it is missing or lacks columns."
    if not path.is_file(): raise LayoutError(f'{path}: file not found')
    try: df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e: raise LayoutError(f'{path}: cannot read CSV ({type(e).__name__}: {e})') from None
    missing = [c for c in required if c not in df.columns]
    if missing: raise LayoutError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")
    return df


def person_photos(folder: Path) -> dict[str, Path]:
    "Map photo stem -> file in a person folder, ignoring hidden files; raise on duplicates."
    found: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if is_hidden(f.name) or f.suffix.lower() not in IMAGE_EXTS: continue
        stem = f.stem.lower()
        if stem in found: raise LayoutError(f'{folder}: two photos named {stem} ({found[stem].name}, {f.name})')
        found[stem] = f
    return found


def read_train(root, age_cut: int = DEFAULT_AGE_CUT) -> pd.DataFrame:
    "One row per training photo: path, person, folder, photo, mask, gender, age, race, age_group, label."
    root = Path(root)
    csv = root / 'train' / 'train.csv'
    people = _read_csv(csv, ['path'])
    rows = []
    for i, folder_name in enumerate(people['path']):
        folder = root / 'train' / 'images' / folder_name
        try: person = parse_person_folder(folder_name)
        except LabelError as e: raise LayoutError(f'{csv} row {i + 2}: {e}') from None
        if not folder.is_dir(): raise LayoutError(f'{folder}: folder listed in train.csv row {i + 2} does not exist')
        photos = person_photos(folder)
        for stem, f in photos.items():
            try: mask = mask_from_stem(stem)
            except LabelError as e: raise LayoutError(f'{f}: {e}') from None
            rows.append((str(f), person.id, folder_name, stem, mask, person.gender, person.age, person.race))
        missing = [s for s in _PHOTO_STEMS if s not in photos]
        if missing: raise LayoutError(f"{folder}: missing photo(s) {', '.join(missing)}")
    df = pd.DataFrame(rows, columns=TRAIN_COLUMNS[:-2])
    if df.empty: raise LayoutError(f'{csv}: no people listed')
    dup = df.drop_duplicates('folder')['person'].duplicated()
    if dup.any(): raise LayoutError(f"{csv}: person id {df.drop_duplicates('folder')['person'][dup].iloc[0]} appears twice")
    return add_labels(df, age_cut)


def add_labels(df: pd.DataFrame, age_cut: int = DEFAULT_AGE_CUT) -> pd.DataFrame:
    "Add `age_group` (at `age_cut`) and the 18-class `label` columns."
    df = df.copy()
    df['age_group'] = age_group(df['age'].to_numpy(), age_cut)
    df['label'] = encode(df['mask'].to_numpy(), df['gender'].to_numpy(), df['age_group'].to_numpy())
    return df


def read_eval(root) -> pd.DataFrame | None:
    "Eval rows (ImageID, path) in info.csv order, or None when the data has no eval folder."
    root = Path(root)
    csv = root / 'eval' / 'info.csv'
    if not csv.exists(): return None
    info = _read_csv(csv, ['ImageID'])
    paths = [root / 'eval' / 'images' / i for i in info['ImageID']]
    missing = [p for p in paths if not p.is_file()]
    if missing: raise LayoutError(f'{missing[0]}: image listed in {csv} does not exist ({len(missing)} missing in all)')
    return pd.DataFrame({'ImageID': info['ImageID'], 'path': [str(p) for p in paths]})


def read_truth(path) -> pd.DataFrame:
    "A truth or submission CSV (ImageID, ans) with integer classes 0..17."
    path = Path(path)
    df = _read_csv(path, ['ImageID', 'ans'])
    ans = pd.to_numeric(df['ans'], errors='coerce')
    bad = ans.isna() | (ans < 0) | (ans > 17) | (ans != ans.round())
    if bad.any(): raise LayoutError(f"{path} row {int(bad.to_numpy().argmax()) + 2}: ans '{df['ans'][bad].iloc[0]}' is not a class 0..17")
    return pd.DataFrame({'ImageID': df['ImageID'], 'ans': ans.astype(int)})


def read_layout(root, age_cut: int = DEFAULT_AGE_CUT) -> DataSource:
    "A DataSource of a competition-layout folder (train rows, eval rows, and eval truth when present)."
    root = Path(root)
    if not root.exists(): raise LayoutError(f'{root}: data folder does not exist')
    if not (root / 'train' / 'train.csv').exists():
        raise LayoutError(f'{root}: not a competition layout (no train/train.csv) and not a labels .csv')
    truth = root / 'eval' / 'truth.csv'
    return DataSource(root, read_train(root, age_cut), read_eval(root), read_truth(truth) if truth.exists() else None)
