"""Progress bars for long steps: shown in a terminal, silent when output goes to a file or a pipe."""
from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import Iterable, Iterator, TypeVar

__all__ = ['show_progress', 'progress', 'learner_bars']

T = TypeVar('T')


def show_progress() -> bool:
    "Bars are shown when stderr is a terminal, unless `FASTMASK_PROGRESS=0` (force with `FASTMASK_PROGRESS=1`)."
    env = os.environ.get('FASTMASK_PROGRESS')
    if env is not None: return env not in ('0', 'false', 'no', '')
    return sys.stderr.isatty()


def progress(iterable: Iterable[T], total: int | None = None, desc: str = '') -> Iterator[T]:
    "Iterate with a rich progress bar on stderr in a terminal, plainly otherwise."
    if not show_progress():
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    if total is None and hasattr(iterable, '__len__'): total = len(iterable)
    cols = [TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
        t = bar.add_task(desc or 'working', total=total)
        for x in iterable:
            yield x
            bar.advance(t)


def learner_bars(learn):
    "Context: fastai's own bars for a Learner in a terminal, `learn.no_bar()` otherwise."
    return nullcontext() if show_progress() else learn.no_bar()
