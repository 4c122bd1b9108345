"""Run records: scan run folders into one table of recipes, overrides, scores, wall time and status."""
from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path

import pandas as pd

from fastmask.rundir import RunDir
from fastmask.errors import FastmaskError

__all__ = ['SORT_KEYS', 'RUNNING_S', 'epochs_logged', 'find_runs', 'run_status', 'run_record', 'runs_table', 'rich_runs_table',
           'format_overrides']

#: columns `runs_table` can sort by (scores descending, the rest ascending)
SORT_KEYS = ('f1', 'f1_mask', 'f1_gender', 'f1_age', 'eval_f1', 'wall_s', 'started', 'recipe', 'run')
#: an unfinished run whose files changed less than this many seconds ago is taken to be still running
RUNNING_S = 600
_DESCENDING = {'f1', 'f1_mask', 'f1_gender', 'f1_age', 'eval_f1'}
_TERSE_DROP = ('recipe',)  # the run column starts with it
_HEADERS = dict(f1_mask='mask', f1_gender='gender', f1_age='age', eval_f1='eval', wall_s='wall s')
COLUMNS = ['run', 'recipe', 'overrides', 'epochs', 'f1', 'f1_mask', 'f1_gender', 'f1_age', 'eval_f1', 'wall_s',
           'status', 'started']


def epochs_logged(metrics_csv) -> int:
    "Training epochs in a `metrics_{task}.csv` (numeric epoch rows; SWA's final 'swa' row is not an epoch)."
    try: return int(pd.to_numeric(pd.read_csv(metrics_csv)['epoch'], errors='coerce').notna().sum())
    except (OSError, KeyError, ValueError, pd.errors.EmptyDataError): return 0


def _read(path: Path) -> dict:
    "A JSON file as a dict; {} if it is missing or half-written."
    try: return json.loads(path.read_text())
    except (OSError, ValueError): return {}


def find_runs(root='runs', pattern: str = '*') -> list[Path]:
    "Run folders (holding config.json or summary.json) under `root` whose recipe name or `recipe/stamp` matches."
    root = Path(root)
    if not root.is_dir(): raise FastmaskError(f'{root}: runs folder does not exist')
    dirs = sorted({p.parent for n in (RunDir.CONFIG, RunDir.SUMMARY) for p in root.rglob(n)
                   if 'mlruns' not in p.parts and 'wandb' not in p.parts})
    def match(d: Path) -> bool:
        rel = d.relative_to(root).as_posix()
        return any(fnmatch.fnmatchcase(s, pattern) for s in (rel, d.parent.name, d.name))
    return [d for d in dirs if match(d)]


def run_status(run_dir, now: float | None = None) -> str:
    "`finished` (summary.json written last), `running` (files changed recently) or `stopped` (interrupted or crashed)."
    run_dir = Path(run_dir)
    s = _read(RunDir(run_dir).summary)
    if s: return str(s.get('status', 'finished'))
    mtimes = [p.stat().st_mtime for p in run_dir.rglob('*') if p.is_file()]
    recent = mtimes and (now or time.time()) - max(mtimes) < RUNNING_S
    return 'running' if recent else 'stopped'


def format_overrides(overrides: dict) -> str:
    "Command-line changes of a run as `k=v` words, e.g. `quick epochs=3`."
    words = []
    for k, v in sorted((overrides or {}).items()):
        if v is True: words.append(k)
        elif isinstance(v, (list, tuple)): words.append(f"{k}={','.join(map(str, v))}")
        else: words.append(f'{k}={v}')
    return ' '.join(words)


def _epochs(run_dir: Path, summary: dict) -> str:
    "Epochs trained per task: metric-log rows, else the summary's count; one number when every task agrees."
    per = {}
    for task, f in RunDir(run_dir).metrics_files().items(): per[task] = epochs_logged(f)
    if not per and isinstance(summary.get('epochs'), dict): per = summary['epochs']
    elif not per and summary.get('epochs') is not None: return str(summary['epochs'])
    if not per: return ''
    vals = set(per.values())
    return str(vals.pop()) if len(vals) == 1 else ' '.join(f'{t[0]}{n}' for t, n in per.items())


def run_record(run_dir, root=None, now: float | None = None) -> dict:
    "One row of the runs table for a run folder (finished or not)."
    run_dir = Path(run_dir)
    cfg, s = _read(RunDir(run_dir).config), _read(RunDir(run_dir).summary)
    recipe = s.get('recipe') or (cfg.get('recipe') or {}).get('name') or run_dir.parent.name
    rel = run_dir.relative_to(root).as_posix() if root is not None else str(run_dir)
    return dict(run=rel, recipe=recipe, overrides=format_overrides(cfg.get('overrides', {})), epochs=_epochs(run_dir, s),
                f1=s.get('valid_f1'), f1_mask=s.get('valid_f1_mask'), f1_gender=s.get('valid_f1_gender'),
                f1_age=s.get('valid_f1_age'), eval_f1=s.get('eval_f1'), wall_s=s.get('wall_time_s'),
                status=run_status(run_dir, now), started=str(cfg.get('started', ''))[:16].replace('T', ' '))


def runs_table(root='runs', pattern: str = '*', sort: str = 'f1') -> pd.DataFrame:
    "Every run under `root` matching `pattern` as a DataFrame, best first (scores descending, missing last)."
    if sort not in SORT_KEYS: raise FastmaskError(f"cannot sort runs by '{sort}' (one of {', '.join(SORT_KEYS)})")
    now = time.time()
    df = pd.DataFrame([run_record(d, root, now) for d in find_runs(root, pattern)], columns=COLUMNS)
    for c in ('f1', 'f1_mask', 'f1_gender', 'f1_age', 'eval_f1', 'wall_s'): df[c] = pd.to_numeric(df[c], errors='coerce')
    return df.sort_values([sort, 'started'], ascending=[sort not in _DESCENDING, False], na_position='last',
                          kind='stable').reset_index(drop=True)


def rich_runs_table(df: pd.DataFrame, title: str | None = None):
    "A rich Table of `runs_table` output: scores to 3 decimals, status coloured."
    from rich.markup import escape
    from rich.table import Table
    t = Table(title=title, header_style='bold')
    df = df.drop(columns=[c for c in _TERSE_DROP if c in df.columns])
    for c in df.columns:
        num = c in _DESCENDING or c in ('epochs', 'wall_s')
        t.add_column(_HEADERS.get(c, c), justify='right' if num else 'left', no_wrap=num or c in ('status', 'started'))
    colour = {'finished': 'green', 'running': 'yellow', 'stopped': 'red'}
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row):
            if c == 'status': cells.append(f'[{colour.get(v, "white")}]{v}[/]')
            elif not isinstance(v, str) and pd.isna(v): cells.append('')
            elif c in _DESCENDING: cells.append(f'{v:.3f}')
            elif c == 'wall_s': cells.append(f'{v:.0f}')
            else: cells.append(escape(str(v)))
        t.add_row(*cells)
    return t
