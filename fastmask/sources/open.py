"""Open any data argument: 'demo', a competition-layout folder, or a labelled CSV."""
from __future__ import annotations

from pathlib import Path

from fastmask.labels import DEFAULT_AGE_CUT
from fastmask.sources.competition import read_layout
from fastmask.sources.datasource import DataSource
from fastmask.sources.demo import demo_dir
from fastmask.sources.labelled import read_labels_csv

__all__ = ['data_path', 'open_data', 'as_source']


def data_path(data) -> Path:
    "The path a data argument names: 'demo' is the cached demo data set (the one place that name is resolved)."
    return demo_dir() if str(data) == 'demo' else Path(data)


def open_data(data, age_cut: int = DEFAULT_AGE_CUT, problems=None) -> DataSource:
    "Open `demo`, a competition-layout folder, or a labelled CSV; lenient with a `problems` collector (see `check_data`)."
    root = data_path(data)
    if root.suffix.lower() == '.csv': return read_labels_csv(root, age_cut, problems)
    return read_layout(root, age_cut, problems)


def as_source(data) -> DataSource:
    "`data` itself when it is a DataSource, else `open_data(data)`."
    return data if isinstance(data, DataSource) else open_data(data)
