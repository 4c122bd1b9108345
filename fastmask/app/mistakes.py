"""A run's mistakes: its validation images ranked by loss per task, its confusion matrices and per-class F1.

What the run folder already holds is read as it is — `valid_preds.csv` with `valid_probs.npy` (18 classes) and
`valid_probs_<task>.npy` (task models), or a k-fold run's out-of-fold `oof_preds.csv` / `oof_probs.npy` — nothing is
predicted again. A task the run has no probabilities of is derived as `fastmask evaluate` does (`per_task`: the
18 classes' marginals, or the product of the three task heads). The truth of each task is `plots.task_truth_preds`',
at the run's own age cut; the ranking is `plots.top_losses`' (wrong predictions, their confidence and loss), sorted
by loss.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageOps
from sklearn.metrics import f1_score

from fastmask.labels import DEFAULT_AGE_CUT, TASKS, task_names
from fastmask.plots import plot_class_f1, plot_confusion, task_truth_preds, top_losses
from fastmask.rundir import RunDir
from fastmask.runners.facecrop import run_recipe_of
from fastmask.tools.evaluate import per_task

__all__ = ['Validation', 'validation', 'ranked', 'figure_image', 'confusion_image', 'class_f1_image', 'thumbnail', 'caption', 'ANY']

ANY = 'any class'


@dataclass
class Validation:
    "A run's validation rows, per-task probabilities and truths (rows aligned), and where they came from."
    rows: pd.DataFrame
    probs: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    source: str

    @property
    def tasks(self) -> list[str]: return [t for t in TASKS if t in self.probs and t in self.truth]


def _read(rd: RunDir) -> tuple[pd.DataFrame, dict, str] | None:
    for csv, npy, tasked in ((rd.valid_preds, rd.valid_probs, True), (rd.oof_preds, rd.oof_probs, False)):
        if not csv.is_file(): continue
        rows, probs = pd.read_csv(csv), {}
        if npy.is_file(): probs['all'] = np.load(npy)
        for t in ('mask', 'gender', 'age') if tasked else ():
            if rd.task_probs(t).is_file(): probs[t] = np.load(rd.task_probs(t))
        probs = {t: p for t, p in probs.items() if len(p) == len(rows) and not np.isnan(p).any()}
        return rows, probs, csv.name
    return None


def validation(run_dir) -> Validation | None:
    "The run folder's validation predictions (or a k-fold run's out-of-fold ones); None when it has none."
    rd = RunDir(run_dir)
    got = _read(rd)
    if got is None: return None
    rows, probs, source = got
    r = run_recipe_of(run_dir)
    cut = r.age_cut if r is not None else DEFAULT_AGE_CUT
    probs = per_task(probs) if probs else {}
    truth = {}
    for t in TASKS:
        tp = task_truth_preds(rows, t, cut)
        if tp is not None and t in probs: truth[t] = np.asarray(tp[0]).astype(int)
    return Validation(rows.reset_index(drop=True), probs, truth, source)


def ranked(v: Validation, task: str, cls: str = ANY, k: int | None = None) -> pd.DataFrame:
    """The wrong predictions of one task, highest loss first: `path, true, pred, confidence, loss` (class names),
    only those whose true class is `cls` unless it is `ANY`; `k` rows at most."""
    names = task_names(task)
    rows = top_losses(v.rows.assign(label=v.truth[task]), v.probs[task], k=len(v.rows))
    rows = rows.sort_values('loss', ascending=False, kind='stable')
    out = pd.DataFrame({'path': rows['path'].astype(str).to_numpy(),
                        'true': [names[i] for i in rows['label']], 'pred': [names[i] for i in rows['pred']],
                        'confidence': rows['confidence'].astype('float64').round(4).to_numpy(),
                        'loss': rows['loss'].astype('float64').round(4).to_numpy()})
    if cls != ANY: out = out[out['true'] == cls]
    return out.head(k).reset_index(drop=True) if k else out.reset_index(drop=True)


def figure_image(fig) -> Image.Image:
    "A matplotlib Figure as a PIL image (PNG in memory, no pyplot state)."
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90, bbox_inches='tight')
    buf.seek(0)
    return Image.open(buf).convert('RGB')


def confusion_image(v: Validation, task: str) -> Image.Image:
    "The task's row-normalised confusion matrix on the validation images."
    label = '18 classes' if task == 'all' else task
    return figure_image(plot_confusion(v.truth[task], v.probs[task].argmax(1), task_names(task),
                                       f'confusion, {label} (rows normalised), {len(v.rows)} validation images'))


def class_f1_image(v: Validation, task: str) -> Image.Image:
    "The task's per-class F1 with support on the validation images."
    y, p = v.truth[task], v.probs[task].argmax(1)
    label = '18 classes' if task == 'all' else task
    return figure_image(plot_class_f1(y, p, task_names(task), f'per-class F1, {label}, macro F1 '
                                      f'{f1_score(y, p, average="macro", zero_division=0):.3f}'))


def thumbnail(path, side: int = 192) -> Image.Image:
    "An upright RGB thumbnail of a validation image, or a grey tile saying it is gone."
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert('RGB')
            im.thumbnail((side, side))
            return im
    except (OSError, ValueError):
        tile = Image.new('RGB', (side, side), (200, 200, 200))
        ImageDraw.Draw(tile).text((10, side // 2 - 6), 'image not found', fill=(60, 60, 60))
        return tile


def caption(row) -> str:
    "One line under a mistake's thumbnail: true -> predicted, confidence, loss, file."
    return f'true {row.true} -> {row.pred} (p={row.confidence:.2f}, loss {row.loss:.2f}) {Path(row.path).parent.name}/{Path(row.path).name}'
