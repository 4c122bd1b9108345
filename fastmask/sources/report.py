"""`fastmask data check`: every problem of a data set with its file and reason, the usable rows, the content hashes.

The format's reader runs in lenient mode (it records the layout or CSV problems and returns the usable rows); the
check adds the image problems (zero-byte, truncated, not an image...) and the images' content hashes. Errors fail the
check (exit 1); the known label-noise people of the competition data are *notices*: they are reported on their own
lines but do not fail it (`--fix-labels` corrects them when training).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fastmask.errors import LayoutError
from fastmask.labels import DEFAULT_AGE_CUT
from fastmask.sources.datasource import DataSource
from fastmask.sources.images import check_images
from fastmask.sources.open import open_data
from fastmask.sources.problems import Problems

__all__ = ['CheckReport', 'DataCheckError', 'check_data']


class DataCheckError(LayoutError):
    "Training data that fails `fastmask data check`."


@dataclass
class CheckReport:
    "Every problem found in a data set, the usable data (`source`: its training and eval rows), the images' hashes."
    root: Path
    kind: str = 'layout'
    problems: Problems = field(default_factory=Problems)
    source: DataSource | None = None
    hashes: dict = field(default_factory=dict)
    n_images: int = 0
    n_people: int = 0

    def add(self, path, kind: str, reason: str, severity: str = 'error', skip: bool = True):
        self.problems.add(path, kind, reason, severity, skip)

    @property
    def rows(self) -> pd.DataFrame | None: return None if self.source is None else self.source.train
    @property
    def eval(self) -> pd.DataFrame | None: return None if self.source is None else self.source.eval
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
        first, n = self.lines()[self.problems.index(self.errors[0])], len(self.errors)
        return DataCheckError(f"{first} (and {n - 1} more problem(s)); 'fastmask data check {self.root}' lists them all, "
                              f"--skip-bad trains on the rest" if n > 1 else
                              f"{first}; 'fastmask data check {self.root}' checks the data, --skip-bad trains on the rest")

    def fingerprint(self, paths=None) -> str:
        "sha256 of the sorted (relative path, content sha1) of the usable training images (or `paths`) and train.csv."
        if paths is None: paths = [] if self.rows is None else list(self.rows['path'])
        items = sorted((os.path.relpath(p, self.root), self.hashes.get(str(p), '')) for p in paths)
        csv = self.root / 'train' / 'train.csv'
        if self.kind == 'layout' and csv.is_file(): items.append(('train/train.csv', hashlib.sha1(csv.read_bytes()).hexdigest()))
        return hashlib.sha256('\n'.join(f'{a}\t{b}' for a, b in items).encode()).hexdigest()

    def _loadable(self, df: pd.DataFrame | None, cache: bool) -> pd.DataFrame | None:
        "The rows of `df` whose image decodes; the others recorded, every image's hash kept."
        if df is None or df.empty: return df
        res = check_images(df['path'], self.root, cache)
        good = []
        for p in df['path']:
            sha, kind, reason = res[p]
            self.hashes[p] = sha
            if kind: self.add(p, kind, reason)
            good.append(not kind)
        self.n_images += len(df)
        return df[good].reset_index(drop=True)


def check_data(data, cache: bool = True, age_cut: int = DEFAULT_AGE_CUT) -> CheckReport:
    "Check a competition layout (or a labels .csv, or 'demo') and report every problem; never stops at the first."
    problems = Problems()
    src = open_data(data, age_cut, problems)
    report = CheckReport(Path(src.root), src.kind, problems, src)
    report.n_people = int(src.train['folder' if src.kind == 'layout' else 'person'].nunique())
    src.train, src.eval = report._loadable(src.train, cache), report._loadable(src.eval, cache)
    return report
