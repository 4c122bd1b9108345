"""The study table: its columns, the Markdown and the chart, seed means, and how it names its data portably."""
from __future__ import annotations

import os
import shlex
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fastmask.io import read_json

__all__ = ['SCORES', 'EVAL', 'COLUMNS', 'SEED_FIELDS', 'CROSS', 'cross_columns', 'seed_means', 'markdown', 'chart',
           'portable', 'data_origin']

SCORES = ('valid_f1', 'valid_f1_mask', 'valid_f1_incorrect', 'valid_f1_gender', 'valid_f1_age')
EVAL = ('eval_f1', 'eval_f1_mask', 'eval_f1_incorrect', 'eval_f1_gender', 'eval_f1_age')
_CHART = ('valid_f1', 'valid_f1_mask', 'valid_f1_gender', 'valid_f1_age', 'eval_f1')   # bars of study.png
COLUMNS = ['recipe', 'description', 'report', 'status', *SCORES, *EVAL, 'wall_time_s', 'run_dir', 'error']
_HEAD = dict(valid_f1='F1 (18)', valid_f1_mask='mask', valid_f1_incorrect='mask incorrect', valid_f1_gender='gender',
             valid_f1_age='age', eval_f1='eval F1 (18)', eval_f1_mask='eval mask', eval_f1_incorrect='eval incorrect',
             eval_f1_gender='eval gender', eval_f1_age='eval age')
#: the per-task scores of a run on another labelled data set (`--eval`): `evaluate`'s keys
CROSS = ('f1', 'f1_mask', 'f1_gender', 'f1_age')


def cross_columns(name: str) -> list[str]:
    "The study columns of one `--eval` data set: `{name}:f1`, `{name}:f1_mask`, ..."
    return [f'{name}:{k}' for k in CROSS]


def _head(col: str) -> str:
    "A column's heading: the named scores', or `{data} gender` for a cross-data-set score."
    if ':' in col:
        name, k = col.split(':', 1)
        return f"{name} {'F1 (18)' if k == 'f1' else k[len('f1_'):]}"
    return _HEAD.get(col, col)


def portable(path) -> str:
    """A path as a committed table should name it: relative to the working folder where it lies beside it (the
    repository, or `../shared`), else as given; 'demo' stays 'demo'."""
    if str(path) == 'demo': return 'demo'
    p, here = Path(path).expanduser().resolve(), Path.cwd().resolve()
    return os.path.relpath(p, here) if p.is_relative_to(here.parent) else str(path)


def data_origin(root) -> str | None:
    "The command that built a practice data folder (its `proxy.json`), or None."
    info = Path(root) / 'proxy.json'
    if not info.is_file(): return None
    try: d = read_json(info)
    except (OSError, ValueError): return None
    many = isinstance(d['source'], list)
    srcs, fmts = (d['source'], d['format']) if many else ([d['source']], [d.get('format', 'utkface')])
    args = ['fastmask', 'data', 'proxy'] + [a for f, fm in zip(srcs, fmts) for a in ('--faces', portable(f), '--format', fm)]
    args += ['--out', portable(root), '--persons', str(d['persons']), '--eval-persons', str(d['eval_persons']),
             '--seed', str(d.get('seed', 0))] + (['--balance'] if d.get('balance') else [])
    if (framing := d.get('framing', 'source')) != 'source': args += ['--framing', framing]  # older sets: 'source'
    ages = d.get('ages') or (18, 119)
    if ages[0] != 18: args += ['--min-age', str(ages[0])]
    if ages[1] < 119: args += ['--max-age', str(ages[1])]
    return shlex.join(args)


def _cell(v, col: str = '') -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)): return '-'
    if isinstance(v, float): return f'{v:.4f}' if 'f1' in col else f'{v:g}'
    return str(v).replace('|', '\\|').replace('\n', ' ')


#: the fields whose members count as repeats of one variant (`seed_means`)
SEED_FIELDS = ('seed', 'split_seed')


def _scored(df: pd.DataFrame) -> list[str]:
    "The score columns a table has: validation, eval truth, then other data sets' (`name:f1...`)."
    return [c for c in SCORES + EVAL if c in df.columns] + [c for c in df.columns if ':' in c and not c.endswith('_std')]


def seed_means(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of each score over members that differ only in `SEED_FIELDS` (finished ones), in
    the order the variants first appear: `variant`, `runs`, then `<score>` and `<score>_std` per score with values."""
    ok = df[df['status'] != 'failed']
    if ok.empty: return pd.DataFrame()
    key = ok['recipe'].map(_without_seeds)
    cols = [c for c in _scored(ok) if pd.to_numeric(ok[c], errors='coerce').notna().any()]
    vals = ok[cols].apply(pd.to_numeric, errors='coerce')
    g = vals.groupby(key, sort=False)
    out = pd.concat([g.size().rename('runs'), g.mean().round(4), g.std().round(4).add_suffix('_std')], axis=1)
    return out.rename_axis('variant').reset_index()


def _without_seeds(spec: str) -> str:
    "A member spec without its seed settings: `cpu_split_lite0[epochs=6,split_seed=1]` -> `cpu_split_lite0[epochs=6]`."
    name, _, inner = str(spec).partition('[')
    rest = [x.strip() for x in inner.rstrip().rstrip(']').split(',')
            if x.strip() and x.split('=')[0].strip() not in SEED_FIELDS]
    return f"{name.strip()}[{','.join(rest)}]" if rest else name.strip()


def _seed_lines(df: pd.DataFrame) -> list[str]:
    "The `seed_means` table in Markdown, where some variant was run with more than one seed."
    m = seed_means(df)
    if m.empty or m['runs'].max() < 2: return []
    scores = [c for c in _scored(m)]
    lines = ['', f"## Mean over seeds ({' / '.join(SEED_FIELDS)}), ± standard deviation", '',
             '| variant | runs | ' + ' | '.join(_head(c) for c in scores) + ' |', '|' + ' --- |' * (len(scores) + 2)]
    for r in m.to_dict('records'):
        cells = [_cell(r[c], c) + ('' if np.isnan(r.get(f'{c}_std', np.nan)) else f" ± {r[f'{c}_std']:.4f}") for c in scores]
        lines.append(f"| {_cell(r['variant'])} | {r['runs']} | " + ' | '.join(cells) + ' |')
    return lines


def markdown(df: pd.DataFrame, name: str, description: str, data, overrides: dict, command: str, out: Path,
              origin: str | None = None) -> str:
    "The study table in Markdown, headed by the data (and the command that built it), the overrides and the regenerating command."
    ov = ', '.join(f'{k}={v}' for k, v in overrides.items()) or 'none'
    cols = ['recipe', 'description', 'report', 'status'] + _scored(df) + ['wall_time_s', 'run_dir']
    head = dict(description='reproduces', report="report's figure", wall_time_s='wall s', run_dir='run folder')
    lines = [f'# Study `{name}`', '', description, '', f'- data: `{data}`'] + \
            ([f'- data built by: `{origin}`'] if origin else []) + [f'- overrides: {ov}', f'- regenerate: `{command}`',
             f"- written: {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}", '',
             '| ' + ' | '.join(head.get(c) or _head(c) for c in cols) + ' |', '|' + ' --- |' * len(cols)]
    for r in df.to_dict('records'):
        r = dict(r, status=f"failed: {r['error']}" if r['status'] == 'failed' else r['status'])
        if r.get('run_dir'):
            p = Path(r['run_dir'])
            r['run_dir'] = p.relative_to(out.resolve()).as_posix() if p.is_relative_to(out.resolve()) else str(p)
        lines.append('| ' + ' | '.join(_cell(r.get(c), c) for c in cols) + ' |')
    return '\n'.join(lines + _seed_lines(df)) + '\n'


def chart(df: pd.DataFrame, title: str):
    "Grouped bars: macro F1 per task (and eval F1 where known) for each member."
    cols = [c for c in list(_CHART) + [c for c in df.columns if ':' in c and c.endswith(('f1_gender', 'f1_age'))]
            if c in df.columns and pd.to_numeric(df[c], errors='coerce').notna().any()]
    fig = Figure(figsize=(max(6, 1.3 * len(df) + 2), 4.2))
    ax = fig.subplots()
    x, w = np.arange(len(df)), .8 / max(len(cols), 1)
    for i, c in enumerate(cols):
        ax.bar(x + (i - (len(cols) - 1) / 2) * w, pd.to_numeric(df[c], errors='coerce').fillna(0), w, label=_head(c))
    for xi, st in zip(x, df['status']):
        if st == 'failed': ax.text(xi, .02, 'failed', ha='center', va='bottom', color='#c44e52', rotation=90)
    ax.set_xticks(x, df['recipe'], rotation=30, ha='right', fontsize=8)
    ax.set(ylim=(0, 1.15), yticks=np.linspace(0, 1, 6), ylabel='macro F1', title=title)
    ax.grid(axis='y', alpha=.3)
    if cols: ax.legend(fontsize=8, ncol=len(cols))
    return fig
