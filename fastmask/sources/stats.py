"""Data overview: counts per mask state, gender and age group, the age histogram, and the 18-class counts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fastmask.io import atomic_path
from fastmask.labels import AGES, DEFAULT_AGE_CUT, GENDERS, MASKS, REPORT_AGE_CUT, age_group, class_names, encode

__all__ = ['data_counts', 'plot_stats', 'data_stats', 'CUT_MARKS']

CUT_MARKS = (30, REPORT_AGE_CUT, 58, DEFAULT_AGE_CUT)


def _groups(df: pd.DataFrame, cut: int) -> np.ndarray | None:
    "Age groups at `cut` from ages in years, else the stored groups, else None."
    if 'age' in df.columns and df['age'].notna().all(): return age_group(df['age'].to_numpy(), cut)
    if 'age_group' in df.columns and df['age_group'].notna().all(): return df['age_group'].to_numpy().astype(int)
    return None


def data_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    "Photo counts per mask state, gender, age group (cut 60 and 57) and 18-class label, where the labels exist."
    out = {}
    ok = lambda c: c in df.columns and df[c].notna().all()
    if ok('mask'): out['mask'] = {n: int((df['mask'] == i).sum()) for i, n in enumerate(MASKS)}
    if ok('gender'): out['gender'] = {n: int((df['gender'] == i).sum()) for i, n in enumerate(GENDERS)}
    for cut in (DEFAULT_AGE_CUT, REPORT_AGE_CUT):
        g = _groups(df, cut)
        if g is None: continue
        out[f'age (cut {cut})'] = {n: int((g == i).sum()) for i, n in enumerate(AGES)}
        if ok('mask') and ok('gender'):
            lab = encode(df['mask'].to_numpy(), df['gender'].to_numpy(), g)
            out[f'18 classes (cut {cut})'] = {n: int((lab == i).sum()) for i, n in enumerate(class_names())}
    if 'person' in df.columns: out['size'] = {'photos': len(df), 'persons': int(df['person'].nunique())}
    else: out['size'] = {'photos': len(df)}
    return out


def _bars(ax, counts: dict, title: str, colour='tab:blue'):
    ax.bar(range(len(counts)), list(counts.values()), color=colour)
    ax.set_xticks(range(len(counts)), list(counts.keys()))
    ax.set_title(title)
    for i, v in enumerate(counts.values()): ax.text(i, v, str(v), ha='center', va='bottom', fontsize=8)


def plot_stats(df: pd.DataFrame, out, title: str = '') -> Path:
    "One PNG with the overview's subplots, written atomically."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    c = data_counts(df)
    fig = plt.figure(figsize=(16, 9), constrained_layout=True)
    gs = fig.add_gridspec(2, 4)
    panels = [('mask', 'mask state', 'tab:blue'), ('gender', 'gender', 'tab:orange'),
              (f'age (cut {DEFAULT_AGE_CUT})', 'age group (cut 60)', 'tab:green')]
    for k, (key, name, colour) in enumerate(panels):
        ax = fig.add_subplot(gs[0, k])
        if key in c: _bars(ax, c[key], f'{name} (photos)', colour)
        else: ax.text(0.5, 0.5, f'no {name} labels', ha='center', va='center'); ax.set_axis_off()
    ax = fig.add_subplot(gs[0, 3])
    if 'age' in df.columns and df['age'].notna().any():
        ages = df['age'].dropna().to_numpy()
        ax.hist(ages, bins=np.arange(int(ages.min()), int(ages.max()) + 2) - 0.5, color='tab:gray')
        for a, style in zip(CUT_MARKS, ('-', '--', ':', '-')):
            ax.axvline(a - 0.5, color='tab:red', ls=style, lw=1.2, label=f'cut {a}')
        ax.legend(fontsize=8)
        ax.set_title('age histogram (photos), cut points marked')
    else: ax.text(0.5, 0.5, 'no ages in years', ha='center', va='center'); ax.set_axis_off()
    ax = fig.add_subplot(gs[1, :])
    k60, k57 = f'18 classes (cut {DEFAULT_AGE_CUT})', f'18 classes (cut {REPORT_AGE_CUT})'
    if k60 in c:
        x = np.arange(18)
        ax.bar(x - 0.2, list(c[k60].values()), 0.4, label=f'age cut {DEFAULT_AGE_CUT} (default)')
        if k57 in c: ax.bar(x + 0.2, list(c[k57].values()), 0.4, label=f'age cut {REPORT_AGE_CUT} (age curve)')
        ax.set_xticks(x, [f'{i}\n' + n.replace('/', '\n') for i, n in enumerate(class_names())], fontsize=7)
        ax.legend()
        ax.set_title('18-class counts (photos)')
    else: ax.text(0.5, 0.5, '18 classes need mask, gender and age labels', ha='center', va='center'); ax.set_axis_off()
    if title: fig.suptitle(title)
    out = Path(out)
    with atomic_path(out, '.png') as tmp: fig.savefig(tmp, dpi=80, format='png')
    plt.close(fig)
    return out


def data_stats(data, out=None) -> tuple[dict, Path | None]:
    "Counts of a data set (layout folder, labels CSV or 'demo'), and the overview PNG when `out` is given."
    from fastmask.sources.open import open_data
    src = open_data(data)
    counts = data_counts(src.train)
    png = plot_stats(src.train, out, title=str(src.root)) if out else None
    return counts, png
