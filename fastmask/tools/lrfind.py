"""`fastmask lr-find`: fastai's learning-rate finder on a recipe's learner, its plot and suggestions."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from fastai.callback.schedule import SuggestionMethod
from fastai.learner import Learner
from matplotlib.figure import Figure

from fastmask.errors import FastmaskError
from fastmask.plots import save_figure
from fastmask.progress import learner_bars
from fastmask.recipes import resolve
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime

__all__ = ['SUGGESTIONS', 'MIN_IT', 'find_lr', 'plot_lr_find', 'lr_find']

#: fastai's suggestion methods, by the name printed
SUGGESTIONS = dict(valley=SuggestionMethod.Valley, slide=SuggestionMethod.Slide, minimum=SuggestionMethod.Minimum,
                   steep=SuggestionMethod.Steep)
#: fewest mini-batches for every suggestion (fastai's `slide` looks 15 points back after trimming the ends)
MIN_IT = 25


def find_lr(learn: Learner, num_it: int = 100, start_lr: float = 1e-7, end_lr: float = 10,
            methods=tuple(SUGGESTIONS)) -> dict[str, float]:
    "Run `learn.lr_find` (weights restored afterwards, no files left behind) and return its suggestions by name."
    bad = [m for m in methods if m not in SUGGESTIONS]
    if bad: raise FastmaskError(f"unknown lr suggestion(s) {', '.join(bad)} (one of {', '.join(SUGGESTIONS)})")
    if num_it < MIN_IT: raise FastmaskError(f'lr_find needs at least {MIN_IT} iterations (got {num_it})')
    path = learn.path
    with tempfile.TemporaryDirectory(prefix='fastmask-lrfind-') as tmp:
        learn.path = Path(tmp)  # LRFinder saves the weights to restore under path/model_dir
        try:
            with learner_bars(learn):
                res = learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it, show_plot=False,
                                    suggest_funcs=tuple(SUGGESTIONS[m] for m in methods))
        finally: learn.path = path
    return {m: float(v) for m, v in zip(methods, res)}


def plot_lr_find(learn: Learner, suggestions: dict[str, float] | None = None, skip_end: int = 5, title: str = '') -> Figure:
    "Smoothed loss against learning rate (log scale) with the suggested rates marked (fastai's `plot_lr_find`)."
    lrs, losses = np.asarray(learn.recorder.lrs, dtype=float), np.asarray([float(l) for l in learn.recorder.losses])
    if skip_end: lrs, losses = lrs[:-skip_end], losses[:-skip_end]
    if not len(lrs): raise FastmaskError('no lr_find results to plot: run find_lr first')
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(lrs, losses)
    ax.set(xscale='log', xlabel='learning rate', ylabel='loss (smoothed)', title=title or 'lr_find')
    colours = ['C1', 'C2', 'C3', 'C4', 'C5']
    for (m, lr), c in zip((suggestions or {}).items(), colours):
        ax.axvline(lr, color=c, ls='--', label=f'{m} {lr:.2e}')
        ax.plot(lr, np.interp(np.log(lr), np.log(lrs), losses), 'o', color=c)
    if suggestions: ax.legend(loc='best')
    ax.grid(alpha=.3)
    return fig


def lr_find(name: str, data='demo', task: str | None = None, quick: bool = False, out=None, num_it: int = 100,
            runtime: Runtime | None = None, weights=None, **overrides) -> tuple[dict[str, float], Path]:
    """lr_find on recipe `name`'s learner for one task, resolved as `fastmask recipe` resolves it (`--quick`, then
    the overrides); save the plot (default `runs/lr_find/{name}_{task}.png`)."""
    r = resolve(name, quick=quick, **overrides)
    learn = build_learner(r, data, task, weights=weights, runtime=runtime or Runtime(num_workers=0))
    sugg = find_lr(learn, num_it=num_it)
    out = Path(out) if out else Path('runs') / 'lr_find' / f'{name}_{learn.task}.png'
    save_figure(plot_lr_find(learn, sugg, title=f'lr_find: {name}, task {learn.task}'), out)
    return sugg, out
