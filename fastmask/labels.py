"""Class encoding of the 18-class problem: mask state, gender, age group and the age curve."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastmask.errors import FastmaskError

__all__ = ['MASKS', 'GENDERS', 'AGES', 'TASKS', 'N_CLASSES', 'IMAGE_EXTS', 'DEFAULT_AGE_CUT', 'REPORT_AGE_CUT',
           'LabelError', 'Person', 'mask_from_stem', 'mask_from_name', 'age_group', 'encode', 'decode',
           'class_names', 'task_names', 'parse_person_folder', 'parse_gender', 'is_hidden', 'person_folder_name']

MASKS = ('wear', 'incorrect', 'not_wear')
GENDERS = ('male', 'female')
AGES = ('<30', '30-59', '>=60')
TASKS = ('all', 'mask', 'gender', 'age')
N_CLASSES = 18
IMAGE_EXTS = ('.jpg', '.jpeg', '.png')
DEFAULT_AGE_CUT = 60
REPORT_AGE_CUT = 57
_MASK_STEMS = {**{f'mask{i}': 0 for i in range(1, 6)}, 'incorrect_mask': 1, 'normal': 2}
_FOLDER_RE = re.compile(r'^(?P<id>[^_]+(?:-\d+)?)_(?P<gender>[A-Za-z]+)_(?P<race>[^_]+)_(?P<age>\d{1,3})$')


class LabelError(FastmaskError, ValueError):
    "A file or folder name that cannot be turned into a label."


@dataclass(frozen=True)
class Person:
    "One person of the competition layout, parsed from `{id}_{gender}_{race}_{age}`."
    id: str
    gender: int
    race: str
    age: int


def is_hidden(name: str) -> bool:
    "macOS resource forks (`._mask1.jpg`) and other dot files are never images."
    return Path(name).name.startswith('.')


def mask_from_stem(stem: str) -> int:
    "Mask state (0 wear, 1 incorrect, 2 not wear) from a photo's file stem."
    try: return _MASK_STEMS[stem.lower()]
    except KeyError: raise LabelError(f"'{stem}' is not a mask photo name (mask1..mask5, incorrect_mask, normal)") from None


def mask_from_name(name: str) -> int:
    "Mask state from a file name with any of the accepted image extensions."
    p = Path(name)
    if is_hidden(p.name): raise LabelError(f"'{p.name}' is a hidden file")
    if p.suffix.lower() not in IMAGE_EXTS: raise LabelError(f"'{p.name}' has no image extension ({', '.join(IMAGE_EXTS)})")
    return mask_from_stem(p.stem)


def parse_gender(s) -> int:
    "Gender index from `male`/`female` (any case), `m`/`f` or 0/1."
    t = str(s).strip().lower()
    if t in ('male', 'm', '0'): return 0
    if t in ('female', 'f', '1'): return 1
    raise LabelError(f"'{s}' is not a gender (male/female)")


def age_group(age, cut: int = DEFAULT_AGE_CUT):
    "Age group 0 (<30), 1 (30..cut-1), 2 (>=cut); works on scalars and arrays."
    if not 30 < cut <= 120: raise ValueError(f'age cut {cut} must lie in 31..120')
    a = np.asarray(age)
    g = np.where(a < 30, 0, np.where(a < cut, 1, 2))
    return int(g) if g.ndim == 0 else g


def encode(mask, gender, age_grp):
    "Class id = mask*6 + gender*3 + age group (scalars or arrays)."
    r = np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age_grp)
    return int(r) if r.ndim == 0 else r


def decode(cls):
    "Inverse of `encode`: (mask, gender, age group)."
    c = np.asarray(cls)
    if c.size and (c.min() < 0 or c.max() >= N_CLASSES): raise ValueError(f'class ids must lie in 0..{N_CLASSES - 1}')
    m, g, a = c // 6, (c // 3) % 2, c % 3
    return (int(m), int(g), int(a)) if c.ndim == 0 else (m, g, a)


def class_names() -> list[str]:
    "The 18 class names in id order, e.g. `wear/male/<30`."
    return [f'{m}/{g}/{a}' for m in MASKS for g in GENDERS for a in AGES]


def task_names(task: str) -> list[str]:
    "Class names of one task."
    return {'all': class_names(), 'mask': list(MASKS), 'gender': list(GENDERS), 'age': list(AGES)}[task]


def parse_person_folder(name: str) -> Person:
    "Parse `{id}_{gender}_{race}_{age}`; raise `LabelError` with the reason otherwise."
    m = _FOLDER_RE.match(name)
    if not m: raise LabelError(f"folder name '{name}' is not {{id}}_{{gender}}_{{race}}_{{age}}")
    gender = parse_gender(m['gender'])
    age = int(m['age'])
    if not 0 < age < 120: raise LabelError(f"folder name '{name}': age {age} out of range 1..119")
    return Person(m['id'], gender, m['race'], age)


def person_folder_name(pid: str, gender: int, race: str, age: int) -> str:
    "The competition's folder name for a person."
    return f'{pid}_{GENDERS[gender]}_{race}_{age}'
