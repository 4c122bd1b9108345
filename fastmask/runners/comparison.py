"""Compare member runs epoch by epoch: the report's optimizer figure (valid loss and macro F1 per epoch)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fastmask.runners.ensemble import member_runs
from fastmask.errors import FastmaskError
from fastmask.io import atomic_path, write_csv
from fastmask.sources.datasource import DataSource
from fastmask.rundir import RunDir
from fastmask.runners.registry import register_runner
from fastmask.runspec import RunSpec

__all__ = ['read_curves', 'member_curves', 'member_label', 'common_settings', 'plot_curves', 'run_comparison']

CURVE_COLUMNS = ['member', 'epoch', 'train_loss', 'valid_loss', 'f1_score']


def read_curves(run_dir, task: str = 'all') -> pd.DataFrame:
    "One run's per-epoch log (`metrics_{task}.csv` written by fastai's CSVLogger)."
    p = RunDir(run_dir).metrics(task)
    if not p.is_file(): raise FastmaskError(f'{p}: no per-epoch log (comparisons need one-model runs with task {task!r})')
    df = pd.read_csv(p)
    df = df[pd.to_numeric(df['epoch'], errors='coerce').notna()]  # CSVLogger repeats its header when a fit restarts
    return df.apply(pd.to_numeric, errors='coerce').reset_index(drop=True)


def member_curves(runs: dict, task: str = 'all') -> pd.DataFrame:
    "Long table of every member's curves: member, epoch, train_loss, valid_loss, f1_score."
    frames = []
    for name, d in runs.items():
        c = read_curves(d, task)
        c = c.assign(member=name, epoch=range(len(c)))
        frames.append(c[[k for k in CURVE_COLUMNS if k in c.columns]])
    return pd.concat(frames, ignore_index=True)


def member_label(name: str, recipe: dict) -> str:
    "Legend entry of a member: its name, optimizer and learning rate as actually run."
    return f"{name} ({recipe.get('opt')}, lr {recipe.get('lr'):g})"


def common_settings(recipes: list[dict]) -> str:
    "Title of a comparison: the settings its members share (arch, image size, batch, schedule)."
    keys = [('arch', '{}'), ('size', '{} px'), ('bs', 'batch {}'), ('schedule', '{} lr')]
    r0, same = recipes[0], lambda k: all(r.get(k) == recipes[0].get(k) for r in recipes)
    parts = [f.format(r0.get(k)) for k, f in keys if r0.get(k) is not None and same(k)]
    swa = r0.get('swa_start')
    if swa is not None and same('swa_start') and swa < r0.get('epochs', 0): parts.append(f'SWA from epoch {swa + 1}')
    return ', '.join(parts)


def plot_curves(curves: pd.DataFrame, path, title: str = '', labels: dict | None = None) -> Path:
    "Two panels (valid loss, macro F1 per epoch), one line per member, written atomically as PNG (Agg backend)."
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for name, g in curves.groupby('member', sort=False):
        for ax, col in zip(axes, ('valid_loss', 'f1_score')):
            ax.plot(g['epoch'] + 1, g[col], marker='o', ms=3, label=(labels or {}).get(name, name))
    loss = curves['valid_loss'].dropna()
    if len(loss) and loss.min() > 0 and loss.max() / loss.min() > 50: axes[0].set_yscale('log')  # diverged members
    for ax, lab in zip(axes, ('valid loss', 'valid macro F1')):
        ax.set_xlabel('epoch'), ax.set_ylabel(lab), ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(fontsize=8)
    if title: fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, '.png') as tmp: fig.savefig(tmp, format='png', dpi=100)
    return Path(path)


@register_runner('comparison')
def run_comparison(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Reuse or train each member; write `curves.csv` and the recipe's figure (valid loss and F1 per epoch)."
    recipe, rd = spec.recipe, RunDir(run_dir)
    members = member_runs(spec, src, log=log, run_dir=run_dir)
    runs = {n: d for n, (d, _) in members.items()}
    curves = member_curves(runs, recipe.curve_task)
    write_csv(rd.curves, curves)
    rs = {n: RunDir(d).read_config()['recipe'] for n, d in runs.items()}
    png = plot_curves(curves, rd / recipe.figure, common_settings(list(rs.values())),
                      {n: member_label(n, r) for n, r in rs.items()})
    summ = {n: RunDir(d).read_summary() for n, d in runs.items()}
    last = curves.groupby('member', sort=False).last()
    return dict(figure=str(png), curves=str(rd.curves), member_runs={n: str(d) for n, d in runs.items()},
                reused=sorted(n for n, (_, r) in members.items() if r),
                member_f1={n: s.get('valid_f1') for n, s in summ.items()},
                member_epochs={n: int((curves['member'] == n).sum()) for n in runs},
                member_last_valid_loss={n: round(float(v), 4) for n, v in last['valid_loss'].items()},
                best_member=max(summ, key=lambda n: summ[n].get('valid_f1') or -1))
