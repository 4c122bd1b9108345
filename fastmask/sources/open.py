"""Open any data argument: 'demo', a competition-layout folder, or a labelled CSV."""
from __future__ import annotations

from pathlib import Path

from fastmask.labels import DEFAULT_AGE_CUT
from fastmask.sources.competition import read_layout
from fastmask.sources.datasource import DataSource
from fastmask.sources.demo import demo_dir
from fastmask.sources.labelled import read_labels_csv

__all__ = ['open_data', 'as_source']


def open_data(data, age_cut: int = DEFAULT_AGE_CUT) -> DataSource:
    "Open `demo`, a competition-layout folder, or a labelled CSV."
    if str(data) == 'demo': data = demo_dir()
    root = Path(data)
    if root.suffix.lower() == '.csv': return read_labels_csv(root, age_cut)
    return read_layout(root, age_cut)


def as_source(data) -> DataSource:
    "`data` itself when it is a DataSource, else `open_data(data)`."
    return data if isinstance(data, DataSource) else open_data(data)
