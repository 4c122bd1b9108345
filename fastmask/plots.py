"""`fastmask report RUN_DIR`: training curves, confusion matrices, per-class F1 and top losses as PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score

from fastmask.rundir import RunDir
from fastmask.errors import FastmaskError
from fastmask.io import atomic_path
from fastmask.labels import DEFAULT_AGE_CUT, age_group, class_names, decode, task_names

__all__ = ['save_figure', 'plot_curves', 'task_truth_preds', 'plot_confusion', 'plot_class_f1', 'top_losses',
           'plot_top_losses', 'report']

_TASKS = ('mask', 'gender', 'age')


def save_figure(fig: Figure, path) -> Path:
    "Write a matplotlib Figure as a PNG atomically (Agg canvas; no pyplot state)."
    with atomic_path(path, '.png') as tmp: fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')
    return Path(path)


def plot_curves(metrics_csv, title: str = '') -> Figure:
    "Train/valid loss and valid F1 (and accuracy) per epoch from a fastai CSVLogger file."
    df = pd.read_csv(metrics_csv)
    if df.empty: raise FastmaskError(f'{metrics_csv}: no epochs logged')
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ep = df['epoch'].to_numpy()
    for c, style in (('train_loss', 'o-'), ('valid_loss', 's-')):
        if c in df.columns: ax1.plot(ep, pd.to_numeric(df[c], errors='coerce'), style, label=c.replace('_', ' '))
    ax1.set(xlabel='epoch', ylabel='loss', title='loss')
    for c, style in (('f1_score', 'o-'), ('accuracy', '^--')):
        if c in df.columns: ax2.plot(ep, pd.to_numeric(df[c], errors='coerce'), style, label=f'valid {c.replace("_score", "")}')
    ax2.set(xlabel='epoch', ylabel='score', title='validation macro F1', ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.legend(); ax.grid(alpha=.3)
        ax.set_xticks(ep)
    fig.suptitle(title)
    return fig


def task_truth_preds(vp: pd.DataFrame, task: str, age_cut: int = DEFAULT_AGE_CUT) -> tuple[np.ndarray, np.ndarray] | None:
    "(true, predicted) class ids of one task from valid_preds.csv rows, or None if the run has no such predictions."
    if task == 'all':
        return (vp['label'].to_numpy(), vp['pred'].to_numpy()) if {'label', 'pred'} <= set(vp.columns) else None
    i = _TASKS.index(task)
    if {'label', 'pred'} <= set(vp.columns): return decode(vp['label'].to_numpy())[i], decode(vp['pred'].to_numpy())[i]
    if f'pred_{task}' not in vp.columns: return None
    truth = age_group(vp['age'].to_numpy(), age_cut) if task == 'age' else vp[task].to_numpy()
    return np.asarray(truth).astype(int), vp[f'pred_{task}'].to_numpy().astype(int)


def plot_confusion(y_true, y_pred, names: list[str], title: str = '') -> Figure:
    "Row-normalised confusion matrix (rows: true class; empty rows stay 0) with counts in small type."
    labels = list(range(len(names)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(names)
    side = 3.2 + 0.42 * n
    fig = Figure(figsize=(side, side * .9))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=.046, pad=.04, label='fraction of true class')
    ax.set_xticks(labels, names, rotation=90 if n > 3 else 0, fontsize=8 if n > 3 else 10)
    ax.set_yticks(labels, names, fontsize=8 if n > 3 else 10)
    ax.set(xlabel='predicted', ylabel='true', title=title)
    for i in range(n):
        for j in range(n):
            if cm[i, j]: ax.text(j, i, str(cm[i, j]), ha='center', va='center', fontsize=7 if n > 3 else 11,
                                 color='white' if norm[i, j] > .5 else 'black')
    return fig


def plot_class_f1(y_true, y_pred, names: list[str], title: str = '', fig=None) -> Figure:
    "Horizontal bars of per-class F1 with each class's support; the macro mean as a line (into `fig`, e.g. a subfigure)."
    labels = list(range(len(names)))
    f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    support = np.bincount(np.asarray(y_true, dtype=int), minlength=len(names))
    if fig is None: fig = Figure(figsize=(8, 1.5 + .32 * len(names)))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, f1, color=['#bbbbbb' if s == 0 else '#4c72b0' for s in support])
    ax.set_yticks(y, [f'{nm}  (n={s})' for nm, s in zip(names, support)], fontsize=8)
    ax.invert_yaxis()
    present = (support > 0) | (np.bincount(np.asarray(y_pred, dtype=int), minlength=len(names)) > 0)
    ax.axvline(f1[present].mean() if present.any() else 0, color='#c44e52', ls='--',
               label='macro F1 (classes in truth or predictions, as scikit-learn)')
    ax.set(xlim=(0, 1), xlabel='F1', title=title)
    ax.legend(loc='lower right', fontsize=8)
    return fig


def top_losses(vp: pd.DataFrame, probs: np.ndarray, k: int = 9) -> pd.DataFrame:
    "The `k` most confidently wrong rows: prediction differs from the truth, sorted by confidence in the prediction."
    if len(vp) != len(probs): raise FastmaskError(f'valid_probs.npy has {len(probs)} rows but valid_preds.csv has {len(vp)}')
    y = vp['label'].to_numpy().astype(int)
    pred = probs.argmax(1)
    out = vp.assign(pred=pred, confidence=probs[np.arange(len(y)), pred],
                    loss=-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)))
    return out[out['pred'] != out['label']].sort_values('confidence', ascending=False, kind='stable').head(k)


def plot_top_losses(rows: pd.DataFrame, ncols: int = 3) -> Figure:
    "Images of `top_losses` rows titled with true and predicted class, confidence and loss (like fastai's)."
    from PIL import Image
    names, n = class_names(), max(len(rows), 1)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(3.2 * ncols, 4.3 * nrows))
    axs = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axs: ax.axis('off')
    for ax, r in zip(axs, rows.itertuples(index=False)):
        try:
            with Image.open(r.path) as im: ax.imshow(im.convert('RGB'))
        except OSError: ax.text(.5, .5, 'image not found', ha='center', va='center', transform=ax.transAxes)
        ax.set_title(f'true {names[int(r.label)]}\npred {names[int(r.pred)]}\np={r.confidence:.2f}  loss={r.loss:.2f}',
                     fontsize=9)
    if rows.empty: axs[0].text(.5, .5, 'no wrong predictions', ha='center', va='center', transform=axs[0].transAxes)
    fig.suptitle('most confidently wrong validation images (true / predicted)')
    return fig


def report(run_dir, k: int = 9) -> list[Path]:
    "Write every plot the run folder has data for; return the PNG paths."
    run_dir = Path(run_dir)
    rd = RunDir(run_dir)
    if not run_dir.is_dir(): raise FastmaskError(f'{run_dir}: run folder does not exist')
    out = []
    for task, f in rd.metrics_files().items():
        try: out.append(save_figure(plot_curves(f, f'{run_dir.parent.name} / {run_dir.name}: {task} model'),
                                    run_dir / f'curves_{task}.png'))
        except (FastmaskError, pd.errors.EmptyDataError): pass
    vp_path = rd.valid_preds
    if not vp_path.is_file():
        if not out: raise FastmaskError(f'{run_dir}: no metric logs and no validation predictions to plot (unfinished run?)')
        return out
    vp = pd.read_csv(vp_path)
    for task in ('all', *_TASKS):
        tp = task_truth_preds(vp, task)
        if tp is None: continue
        names, label = task_names(task), '18 classes' if task == 'all' else f'{task}'
        suffix = '' if task == 'all' else f'_{task}'
        out.append(save_figure(plot_confusion(*tp, names, f'confusion, {label} (rows normalised)'),
                               run_dir / f'confusion{suffix}.png'))
        if task == 'all':
            out.append(save_figure(plot_class_f1(*tp, names, f'per-class F1, macro F1 {f1_score(*tp, average="macro"):.3f}'),
                                   run_dir / 'class_f1.png'))
    if rd.valid_probs.is_file() and 'label' in vp.columns:
        rows = top_losses(vp, np.load(rd.valid_probs), k)
        out.append(save_figure(plot_top_losses(rows), run_dir / 'top_losses.png'))
    return out
