"""Problems found while reading data: a reader raises the first one (strict) or records them all (lenient)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fastmask.errors import LayoutError

__all__ = ['Problem', 'Problems', 'flag', 'read_table']


@dataclass(frozen=True)
class Problem:
    "One problem: the file or folder, a short kind, the reason; `skip`: `--skip-bad` leaves `path` out."
    path: str
    kind: str
    reason: str
    severity: str = 'error'
    skip: bool = True

    def __str__(self): return f'{self.path}: {self.reason}'


class Problems(list):
    "The problems a lenient reader found, in the order found: errors, and notices that fail nothing."
    def add(self, path, kind: str, reason: str, severity: str = 'error', skip: bool = True):
        self.append(Problem(str(path), kind, reason, severity, skip))

    @property
    def errors(self) -> list: return [p for p in self if p.severity == 'error']
    @property
    def notices(self) -> list: return [p for p in self if p.severity != 'error']


def flag(problems, path, kind: str, reason: str, strict: str | None = None, severity: str = 'error', skip: bool = True):
    "Record a problem in `problems`; without a collector (strict) raise an error as one line, `strict` or `path: reason`."
    if problems is not None: problems.add(path, kind, reason, severity, skip)
    elif severity == 'error': raise LayoutError(strict or f'{path}: {reason}')


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ''


def read_table(path: Path, required=(), problems=None, lower: bool = False) -> pd.DataFrame | None:
    "A CSV as strings (column names stripped and lower-cased if `lower`), or None with its problem flagged."
    if not path.is_file(): return flag(problems, path, 'csv', 'file not found')
    try: df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e: return flag(problems, path, 'csv', f'cannot read CSV ({type(e).__name__}: {_first_line(e)})')
    if lower: df.columns = [str(c).strip().lower() for c in df.columns]
    cols = list(map(str, df.columns))
    if len(set(cols)) < len(cols): return flag(problems, path, 'csv', f"repeated column name(s) (has {', '.join(cols)})")
    missing = [c for c in required if c not in df.columns]
    if missing: return flag(problems, path, 'csv', f"missing column(s) {', '.join(missing)} (has {', '.join(cols)})")
    return df
