"""`fastmask data check`: every problem of a data set with its file and reason, and the lenient reader of `--skip-bad`.

Errors fail the check (exit 1); the known label-noise people of the competition data are *notices*: they are
reported on their own lines but do not fail it (`--fix-labels` corrects them when training).
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from fastmask.errors import LayoutError
from fastmask.io import cache_root, read_json, write_csv, write_json
from fastmask.labels import (DEFAULT_AGE_CUT, IMAGE_EXTS, LabelError, is_hidden, mask_from_stem, parse_gender,
                             parse_person_folder)
from fastmask.sources.competition import TRAIN_COLUMNS, add_labels, read_truth
from fastmask.sources.datasource import DataSource
from fastmask.sources.demo import demo_dir
from fastmask.sources.labelfix import apply_fixes, noise_reason
from fastmask.sources.labelled import GROUP_COLUMNS, parse_age, parse_mask
from fastmask.sources.open import open_data
from fastmask.sources.relabel import apply_relabel

__all__ = ['Problem', 'CheckReport', 'DataCheckError', 'Prepared', 'check_image', 'check_images', 'check_data',
           'prepare_data', 'PHOTO_STEMS']

PHOTO_STEMS = tuple(f'mask{i}' for i in range(1, 6)) + ('incorrect_mask', 'normal')


class DataCheckError(LayoutError):
    "Training data that fails `fastmask data check`."


@dataclass(frozen=True)
class Problem:
    "One problem: the file or folder, a short kind, the reason; `skip`: `--skip-bad` leaves `path` out."
    path: str
    kind: str
    reason: str
    severity: str = 'error'
    skip: bool = True

    def __str__(self): return f'{self.path}: {self.reason}'


def check_image(path) -> tuple[str | None, str | None, str | None]:
    "(sha1 of the bytes, problem kind, reason) of one image file; kind and reason are None when it loads."
    try: data = Path(path).read_bytes()
    except OSError as e: return None, 'unreadable', f'cannot read file ({e.strerror or e})'
    if not data: return None, 'empty', 'zero-byte file'
    sha = hashlib.sha1(data).hexdigest()
    old, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            ImageOps.exif_transpose(im).convert('RGB')  # what augment.FaceImage does
    except UnidentifiedImageError: return sha, 'not-image', 'not an image (no image format recognised)'
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if 'truncated' in msg.lower(): return sha, 'truncated', f'truncated image ({msg})'
        return sha, 'unreadable', f'unreadable image ({msg})'
    finally: ImageFile.LOAD_TRUNCATED_IMAGES = old
    return sha, None, None


def _cache_file(root: Path) -> Path:
    return cache_root() / 'check' / (hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16] + '.json')


def check_images(paths, root: Path, cache: bool = True, workers: int | None = None) -> dict[str, tuple]:
    "`check_image` of many files in threads, remembered by (size, mtime) in the fastmask cache."
    paths = [Path(p) for p in paths]
    cf = _cache_file(root) if cache else None
    known = {}
    if cf is not None and cf.is_file():
        try: known = read_json(cf)
        except (OSError, ValueError): known = {}
    out, todo = {}, []
    for p in paths:
        try: st = p.stat()
        except OSError: st = None
        key = str(p)
        stamp = [st.st_size, st.st_mtime_ns] if st else None
        if stamp and key in known and known[key][:2] == stamp: out[key] = tuple(known[key][2:])
        else: todo.append((key, stamp))
    if todo:
        n = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(n) as ex: res = list(ex.map(lambda kp: check_image(kp[0]), todo))
        for (key, stamp), r in zip(todo, res):
            out[key] = r
            if stamp: known[key] = [*stamp, *r]
        if cf is not None:
            try: write_json(cf, known)
            except OSError: pass
    return out


@dataclass
class CheckReport:
    "Every problem found in a data set, the usable training rows and eval rows, and the images' content hashes."
    root: Path
    kind: str = 'layout'
    problems: list = field(default_factory=list)
    rows: pd.DataFrame | None = None
    eval: pd.DataFrame | None = None
    hashes: dict = field(default_factory=dict)
    n_images: int = 0
    n_people: int = 0

    def add(self, path, kind: str, reason: str, severity: str = 'error', skip: bool = True):
        self.problems.append(Problem(str(path), kind, reason, severity, skip))

    @property
    def errors(self) -> list: return [p for p in self.problems if p.severity == 'error']
    @property
    def notices(self) -> list: return [p for p in self.problems if p.severity != 'error']
    @property
    def ok(self) -> bool: return not self.errors

    def lines(self) -> list[str]:
        "One line per problem, `path: reason` (line breaks in names escaped); notices say so."
        esc = lambda t: t.replace('\r', '\\r').replace('\n', '\\n')
        return [esc(str(p) if p.severity == 'error' else f'{p.path}: notice: {p.reason}') for p in self.problems]

    def summary(self) -> str:
        "One line: the verdict, the problem count by kind, what was checked."
        checked = f'{self.n_people} people, {self.n_images} images checked'
        notes = f'; {len(self.notices)} label-noise notice(s)' if self.notices else ''
        if self.ok: return f'{self.root}: data ok ({checked}){notes}'
        kinds = ', '.join(f'{k} {n}' for k, n in Counter(p.kind for p in self.errors).most_common())
        return f'{self.root}: {len(self.errors)} problem(s) ({kinds}; {checked}){notes}'

    def skipped(self) -> pd.DataFrame:
        "What `--skip-bad` leaves out: path, kind, reason."
        return pd.DataFrame([(p.path, p.kind, p.reason) for p in self.errors if p.skip], columns=['path', 'kind', 'reason'])

    def refusal(self) -> DataCheckError:
        "The one-line error a recipe raises on data that fails the check."
        return DataCheckError(f"{self.lines()[self.problems.index(self.errors[0])]} (and {len(self.errors) - 1} more problem(s)); "
                              f"'fastmask data check {self.root}' lists them all, --skip-bad trains on the rest"
                              if len(self.errors) > 1 else
                              f"{self.lines()[self.problems.index(self.errors[0])]}; 'fastmask data check {self.root}' checks the data, "
                              f"--skip-bad trains on the rest")

    def fingerprint(self, paths=None) -> str:
        "sha256 of the sorted (relative path, content sha1) of the usable training images (or `paths`) and train.csv."
        if paths is None: paths = [] if self.rows is None else list(self.rows['path'])
        items = sorted((os.path.relpath(p, self.root), self.hashes.get(str(p), '')) for p in paths)
        csv = self.root / 'train' / 'train.csv'
        if self.kind == 'layout' and csv.is_file(): items.append(('train/train.csv', hashlib.sha1(csv.read_bytes()).hexdigest()))
        return hashlib.sha256('\n'.join(f'{a}\t{b}' for a, b in items).encode()).hexdigest()


def _read_csv(report: CheckReport, path: Path, required) -> pd.DataFrame | None:
    "A CSV as strings, or None with a problem recorded."
    if not path.is_file():
        report.add(path, 'csv', 'file not found')
        return None
    try: df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:
        report.add(path, 'csv', f'cannot read CSV ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""})')
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        report.add(path, 'csv', f"missing column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")
        return None
    return df


def _folder_problem(name: str) -> tuple[str, str]:
    "(kind, reason) of a person folder name that does not parse."
    try: parse_person_folder(name)
    except LabelError as e:
        msg = str(e)
        return ('gender' if 'not a gender' in msg else 'age' if 'age' in msg and 'out of range' in msg else 'folder-name'), msg
    return '', ''


def _csv_mismatch(row: pd.Series, person) -> str | None:
    "How train.csv's id/gender/age columns disagree with the folder name, if they do."
    bad = []
    if 'id' in row and row['id'] and str(row['id']) != person.id: bad.append(f"id {row['id']} != {person.id}")
    if 'gender' in row and row['gender']:
        try: g = parse_gender(row['gender'])
        except LabelError: g = None
        if g != person.gender: bad.append(f"gender {row['gender']} disagrees with the folder name")
    if 'age' in row and row['age'] and str(row['age']).strip() != str(person.age): bad.append(f"age {row['age']} != {person.age}")
    return '; '.join(bad) or None


def _check_train(report: CheckReport, cache: bool):
    root = report.root
    csv, images = root / 'train' / 'train.csv', root / 'train' / 'images'
    people = _read_csv(report, csv, ['path'])
    if not images.is_dir(): report.add(images, 'no-folder', 'training images folder does not exist')
    listed, seen_ids, candidates = set(), {}, []
    for i, r in (people.iterrows() if people is not None else []):
        name, line = r['path'], i + 2
        if name in listed:
            report.add(f'{csv} row {line}', 'duplicate-row', f"folder {name} is listed twice")
            continue
        listed.add(name)
        folder = images / name
        kind, reason = _folder_problem(name)
        if kind:
            report.add(folder, kind, reason)
            continue
        person = parse_person_folder(name)
        if not folder.is_dir():
            report.add(folder, 'no-folder', f'folder listed in train.csv row {line} does not exist')
            continue
        mismatch = _csv_mismatch(r, person)
        if mismatch:
            report.add(folder, 'csv-mismatch', f'train.csv row {line}: {mismatch}')
            continue
        if person.id in seen_ids:
            report.add(folder, 'duplicate-id', f'person id {person.id} also has folder {seen_ids[person.id]}')
            continue
        seen_ids[person.id] = name
        candidates.append((folder, person))
    if images.is_dir():
        for f in sorted(images.iterdir()):
            if is_hidden(f.name) or f.name in listed: continue
            report.add(f, 'no-row', 'folder is not listed in train.csv' if f.is_dir() else 'unexpected file in train/images')
    photos = []
    for folder, person in candidates:
        found = {}
        for f in sorted(folder.iterdir()):
            if is_hidden(f.name): continue
            stem = f.stem.lower()
            if f.is_dir() or f.suffix.lower() not in IMAGE_EXTS or stem not in PHOTO_STEMS:
                report.add(f, 'extra-file', f"unexpected {'folder' if f.is_dir() else 'file'} "
                                            f"(photos are mask1..mask5, incorrect_mask, normal .jpg/.jpeg/.png)")
            elif stem in found: report.add(f, 'duplicate-photo', f'second photo {stem} (also {found[stem].name})')
            else: found[stem] = f
        missing = [s for s in PHOTO_STEMS if s not in found]
        if missing: report.add(folder, 'missing-photo', f"missing photo(s) {', '.join(missing)}", skip=False)
        why = noise_reason(person.id)
        if why: report.add(folder, 'label-noise', why, severity='notice', skip=False)
        photos += [(f, stem, folder.name, person) for stem, f in found.items()]
    res = check_images([f for f, *_ in photos], root, cache)
    rows = []
    for f, stem, name, p in photos:
        sha, kind, reason = res[str(f)]
        report.hashes[str(f)] = sha
        if kind: report.add(f, kind, reason)
        else: rows.append((str(f), p.id, name, stem, mask_from_stem(stem), p.gender, p.age, p.race))
    report.rows = pd.DataFrame(rows, columns=TRAIN_COLUMNS[:-2])
    report.n_people, report.n_images = len(candidates), report.n_images + len(photos)


def _check_eval(report: CheckReport, cache: bool):
    csv = report.root / 'eval' / 'info.csv'
    if not csv.exists(): return
    info = _read_csv(report, csv, ['ImageID'])
    if info is None: return
    paths = [report.root / 'eval' / 'images' / i for i in info['ImageID']]
    exists = [p.is_file() for p in paths]
    for i, (p, ok) in enumerate(zip(paths, exists)):
        if not ok: report.add(p, 'eval-missing', f'image listed in eval/info.csv row {i + 2} does not exist')
    res = check_images([p for p, ok in zip(paths, exists) if ok], report.root, cache)
    good = []
    for p, ok in zip(paths, exists):
        if not ok: good.append(False); continue
        sha, kind, reason = res[str(p)]
        if kind: report.add(p, kind, reason)
        good.append(not kind)
    report.n_images += sum(exists)
    report.eval = pd.DataFrame({'ImageID': info['ImageID'], 'path': [str(p) for p in paths]})[good].reset_index(drop=True)


def _check_csv(report: CheckReport, cache: bool):
    "A labels CSV (see `csvdata`): `path` (relative to the CSV's folder) and mask / gender / age columns."
    df = _read_csv(report, report.root, [])
    if df is None: return
    df.columns = [str(c).strip().lower() for c in df.columns]
    if 'path' not in df.columns: return report.add(report.root, 'csv', f"needs a 'path' column (has {', '.join(df.columns)})")
    base = report.root.resolve().parent
    parsers = dict(mask=parse_mask, gender=parse_gender, age=parse_age)
    seen, keep = set(), []
    for i, r in enumerate(df.to_dict('records')):
        where, bad, p = f'{report.root} row {i + 2}', None, Path(str(r['path']).strip())
        p = p if p.is_absolute() else base / p
        if not str(r['path']).strip(): bad = ('csv', 'empty path')
        elif str(p) in seen: bad = ('duplicate-row', f'{p} is listed twice')
        elif not p.is_file(): bad = ('no-folder', f'image {p} does not exist')
        for col, fn in parsers.items():
            if bad or col not in r: continue
            if str(r[col]).strip() == '': bad = (col, f'empty {col}')
            else:
                try: fn(r[col])
                except LabelError as e: bad = (col, str(e))
        if not bad and any(c in r and str(r[c]).strip() == '' for c in GROUP_COLUMNS): bad = ('csv', 'empty person/group/photo')
        seen.add(str(p))
        if bad: report.add(where, *bad)
        else: keep.append((i, p))
    res = check_images([p for _, p in keep], base, cache)
    good = []
    for i, p in keep:
        sha, kind, reason = res[str(p)]
        report.hashes[str(p)] = sha
        if kind: report.add(p, kind, reason)
        else: good.append(i)
    report.rows = df.iloc[good].assign(path=[str(p) for i, p in keep if i in set(good)]).reset_index(drop=True)
    report.n_images = len(keep)
    gcol = next((c for c in GROUP_COLUMNS if c in df.columns), None)
    report.n_people = int(df[gcol].nunique()) if gcol else len(keep)


def check_data(data, cache: bool = True) -> CheckReport:
    "Check a competition layout (or a labels .csv, or 'demo') and report every problem; never stops at the first."
    if str(data) == 'demo':
        data = demo_dir()
    root = Path(data)
    if not root.exists(): raise LayoutError(f'{root}: data folder does not exist')
    if root.suffix.lower() == '.csv' and root.is_file():
        report = CheckReport(root, 'csv')
        _check_csv(report, cache)
        return report
    if not (root / 'train').is_dir() and not (root / 'eval').is_dir():
        raise LayoutError(f'{root}: not a competition layout (no train/ or eval/ folder) and not a labels .csv')
    report = CheckReport(root)
    _check_train(report, cache)
    _check_eval(report, cache)
    return report


@dataclass
class Prepared:
    "What `prepare_data` did: the check, the label fixes, what was skipped, the data fingerprint."
    report: CheckReport
    skip_bad: bool = False
    fixes: list = field(default_factory=list)
    fix_labels: bool = False
    fingerprint: str = ''
    relabel: dict | None = None

    def config(self) -> dict:
        "The entries of a run's config.json."
        return dict(data_fingerprint=self.fingerprint, skip_bad=self.skip_bad, fix_labels=self.fix_labels,
                    label_fixes=self.fixes, data_check=self.report.summary(),
                    skipped=len(self.report.skipped()) if self.skip_bad else 0, relabel=self.relabel)

    def write(self, run_dir) -> None:
        "Write `skipped.csv` into the run folder when `--skip-bad` left files out."
        sk = self.report.skipped()
        if self.skip_bad and len(sk): write_csv(Path(run_dir) / 'skipped.csv', sk)


def prepare_data(data, skip_bad: bool = False, fix_labels: bool = False, age_cut: int | None = None, cache: bool = True,
                 relabel=None):
    "Check `data`, refuse it (one line) when bad unless `skip_bad`; apply the label fixes and a relabel file if asked."
    age_cut = age_cut or DEFAULT_AGE_CUT
    report = check_data(data, cache)
    if not report.ok and not skip_bad: raise report.refusal()
    if report.ok: src = open_data(report.root, age_cut)
    elif report.kind == 'csv':  # read the good rows (absolute paths) through the CSV reader
        if report.rows is None or report.rows.empty: raise DataCheckError(f'{report.root}: no usable rows left after skipping bad data')
        with tempfile.TemporaryDirectory() as d:
            src = open_data(write_csv(Path(d) / 'good.csv', report.rows), age_cut)
        src.root = report.root
    else:
        if report.rows is None or report.rows.empty: raise DataCheckError(f'{report.root}: no usable training photos left after skipping bad data')
        truth = report.root / 'eval' / 'truth.csv'
        src = DataSource(report.root, add_labels(report.rows, age_cut), report.eval,
                         read_truth(truth) if truth.exists() and report.eval is not None else None)
    fixes = []
    if fix_labels: src.train, fixes = apply_fixes(src.train)
    rel = None
    if relabel:  # a reviewed relabel file (sources/relabel.py), e.g. from `fastmask data noise`
        src.train, rel = apply_relabel(src.train, relabel, report.root, age_cut)
    return src, Prepared(report, skip_bad, fixes, fix_labels, report.fingerprint(list(src.train['path'])), rel)
