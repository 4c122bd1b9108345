"""A data set as fastmask sees it, whatever it was read from: training rows, eval rows, eval truth."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ['DataSource']


@dataclass
class DataSource:
    "A data set: training rows, optional eval rows (info.csv order) and optional eval truth."
    root: Path
    train: pd.DataFrame
    eval: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    kind: str = 'layout'

    @property
    def tasks(self) -> tuple[str, ...]:
        "The tasks the labels allow."
        cols = set(self.train.columns)
        ts = tuple(t for t in ('mask', 'gender', 'age') if t in cols and self.train[t].notna().all())
        return (('all',) if len(ts) == 3 else ()) + ts
