"""Progress bars for long steps: shown in a terminal, silent when output goes to a file or a pipe."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

__all__ = ['show_progress', 'progress', 'learner_bars', 'EpochLine']

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


class EpochLine:
    "A Learner's `logger` that prints each finished epoch as one line with its column names (for log files)."
    def __init__(self, learn, prefix: str = ''): self.learn, self.prefix = learn, prefix

    def __call__(self, log):
        names, log = list(self.learn.recorder.metric_names), list(log) if hasattr(log, '__iter__') else log
        if not isinstance(log, list) or len(log) != len(names): return print(log)
        fmt = lambda v: f'{v:.4f}' if isinstance(v, float) else str(v)
        cells = [f'{n} {fmt(v)}' for n, v in zip(names[1:], log[1:])]
        total = f"/{self.learn.n_epoch}" if getattr(self.learn, 'n_epoch', None) else ''
        print(f"{self.prefix}epoch {log[0] + 1 if isinstance(log[0], int) else log[0]}{total}  " + '  '.join(cells), flush=True)


@contextmanager
def learner_bars(learn):
    "Context: fastai's own bars for a Learner where bars show; otherwise none, and one log line per epoch."
    if show_progress():
        yield learn
        return
    old = learn.logger
    learn.logger = EpochLine(learn, f"{getattr(learn, 'task', '')}: " if getattr(learn, 'task', None) else '')
    try:
        with learn.no_bar(): yield learn
    finally: learn.logger = old
