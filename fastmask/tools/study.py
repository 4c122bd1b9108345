"""`fastmask study`: several recipes (or a named study) with shared overrides, resumable, in one table and chart.

A study reuses every member that already has a finished run of the same specification under `--out`
(`runners.run.find_run`: the resolved recipe's settings, the data and its fingerprint, `--skip-bad`, `--fix-labels`,
`--relabel` and `--weights` files by content), trains the others with `run_recipe`, records a member that fails with its
one-line error and goes on, and writes `--out/study/<name>/` (`study.csv`, `study.md`, `study.png`) in one swap.
A member is a recipe name, optionally with its own settings: `cpu_split_lite0[bn=train,epochs=2]` (any recipe
field, as `--set`), so one study compares variants of one recipe.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fastmask.errors import FastmaskError
from fastmask.inference.scoring import scores
from fastmask.io import atomic_dir, read_json
from fastmask.recipes.spec import resolve_spec, spec_name
from fastmask.rundir import RunDir
from fastmask.runners.run import find_run, start_run
from fastmask.runspec import RunSpec
from fastmask.runtime import Runtime

__all__ = ['STUDIES', 'COLUMNS', 'register_study', 'list_studies', 'study_members', 'run_study', 'study_command', 'failed_members',
           'StudyError', 'OVERRIDES', 'SEED_FIELDS', 'seed_means', 'spec_arguments', 'portable', 'data_origin']

#: named studies: plain data, `name: dict(description=..., members=(recipe names, ...))`; members are checked on use
STUDIES: dict[str, dict] = {
    'transfer': dict(description='ImageNet transfer on EfficientNet-Lite0 (offline weights): the linear probe against '
                                 'fine-tuning as the report did it, with train-mode BatchNorm, and with frozen '
                                 'BatchNorm statistics (cpu_split_lite0)',
                     members=('probe_lite0', 'split_effnet_lite0[epochs=3,size=160,patience=none]',
                              'cpu_split_lite0[bn=train]', 'cpu_split_lite0')),
    'report-effects': dict(description="The report's effects on Lite0 and practice data, each against cpu_split_lite0 "
                                       '(label smoothing, age cut 60): SWA, no label smoothing, age cut 57, the soft-F1 '
                                       'and CE+F1 age losses, a 3-member soft-voting ensemble, 3-fold k-fold, face crops',
                           members=('cpu_split_lite0', 'cpu_split_lite0[swa_start=2,epochs=4,swa_lr=1e-4]',
                                    'cpu_split_lite0[loss=ce]', 'cpu_split_lite0[age_cut=57]',
                                    "cpu_split_lite0[task_overrides=age:loss:f1]",
                                    "cpu_split_lite0[task_overrides=age:loss:ce_f1]",
                                    'cpu_ensemble_lite0', 'cpu_kfold_lite0', 'cpu_facecrop_lite0')),
    'report-age': dict(description="The report's age-model effects on Lite0, one age model each (run it with "
                                   "`--tasks age`): cpu_split_lite0 (label smoothing, age cut 60) against plain CE, "
                                   'age cut 57, the soft-F1 and CE+F1 losses, and SWA over the last 2 of 6 epochs',
                       members=('cpu_split_lite0', 'cpu_split_lite0[loss=ce]', 'cpu_split_lite0[age_cut=57]',
                                'cpu_split_lite0[loss=f1]', 'cpu_split_lite0[loss=ce_f1]',
                                'cpu_split_lite0[swa_start=4,swa_lr=1e-4]')),
    'report': dict(description="The published report's experiments, one run each",
                   members=('baseline_mobilenetv2', 'split_mobilenetv2', 'split_effnet_b3', 'swa_effnet_b3',
                            'f1loss_age', 'cef1_age', 'optimizer_comparison', 'ensemble_final',
                            'facecrop_densenet121', 'external_age_model', 'sweep_age_cut')),
}

#: the named overrides of the command line (`--set FIELD=VALUE` reaches any other recipe field)
OVERRIDES = ('epochs', 'size', 'bs', 'lr', 'arch', 'seed', 'tasks', 'pretrained')
_SCORES = ('valid_f1', 'valid_f1_mask', 'valid_f1_incorrect', 'valid_f1_gender', 'valid_f1_age')
_EVAL = ('eval_f1', 'eval_f1_mask', 'eval_f1_incorrect', 'eval_f1_gender', 'eval_f1_age')
_CHART = ('valid_f1', 'valid_f1_mask', 'valid_f1_gender', 'valid_f1_age', 'eval_f1')   # bars of study.png
COLUMNS = ['recipe', 'description', 'report', 'status', *_SCORES, *_EVAL, 'wall_time_s', 'run_dir', 'error']
_HEAD = dict(valid_f1='F1 (18)', valid_f1_mask='mask', valid_f1_incorrect='mask incorrect', valid_f1_gender='gender',
             valid_f1_age='age', eval_f1='eval F1 (18)', eval_f1_mask='eval mask', eval_f1_incorrect='eval incorrect',
             eval_f1_gender='eval gender', eval_f1_age='eval age')


class StudyError(FastmaskError, ValueError):
    "An unknown study, an empty study, or members that failed."


def register_study(name: str, members, description: str = '') -> dict:
    "Add a named study (its member recipes are looked up when it runs)."
    if name in STUDIES: raise ValueError(f'study {name} registered twice')
    STUDIES[name] = dict(description=description, members=tuple(members))
    return STUDIES[name]


def list_studies() -> dict[str, dict]:
    "The named studies, by name."
    return dict(STUDIES)


def study_members(names) -> tuple[str, tuple[str, ...], str]:
    "(study name, member recipe names, description) of a study name, recipe names, or both (studies expanded)."
    names = [names] if isinstance(names, str) else list(names)
    if not names: raise StudyError(f"a study needs a study name ({', '.join(STUDIES)}) or recipe names")
    members = [m for n in names for m in (STUDIES[n]['members'] if n in STUDIES else (n,))]
    members = tuple(dict.fromkeys(members))  # each recipe once, in order
    if len(names) == 1 and names[0] in STUDIES: return names[0], members, STUDIES[names[0]]['description']
    name = '+'.join(names)
    if len(name) > 80: name = f"{names[0]}+{len(names) - 1}-more-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return name, members, 'recipes ' + ', '.join(members)


def study_command(names, data, out, overrides: dict, quick: bool = False, base: RunSpec | None = None) -> str:
    "The `fastmask study` command line that regenerates a study (data and out as portable paths)."
    names = [names] if isinstance(names, str) else list(names)
    args = ['fastmask', 'study', *names, '--data', portable(data), '--out', portable(out)] + (['--quick'] if quick else [])
    for k, v in overrides.items():
        if v is None: continue
        if k == 'pretrained': args.append('--pretrained' if v else '--no-pretrained')
        elif k == 'tasks': args += [a for t in v for a in ('--tasks', t)]
        elif k in OVERRIDES: args += [f'--{k}', str(v)]
        else: args += ['--set', f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"]
    if base is not None: args += spec_arguments(base)
    return shlex.join(args)


def spec_arguments(spec: RunSpec) -> list[str]:
    "The command-line options that give a run spec's data preparation, weights and non-default runtime."
    d, rt, default = spec.data, spec.runtime, Runtime()
    args = (['--skip-bad'] if d.skip_bad else []) + (['--fix-labels'] if d.fix_labels else [])
    if d.relabel: args += ['--relabel', portable(d.relabel)]
    if spec.weights: args += ['--weights', portable(spec.weights)]
    if rt.precision != default.precision: args += ['--precision', rt.precision]
    if rt.channels_last is not None: args.append('--channels-last' if rt.channels_last else '--no-channels-last')
    if rt.compile: args.append('--compile')
    if not rt.cache: args.append('--no-cache')
    if rt.deterministic: args.append('--deterministic')
    if rt.num_workers is not None: args += ['--workers', str(rt.num_workers)]
    return args


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
    ages = d.get('ages') or (18, 119)
    if ages[0] != 18: args += ['--min-age', str(ages[0])]
    if ages[1] < 119: args += ['--max-age', str(ages[1])]
    return shlex.join(args)


def _one_line(e: BaseException) -> str:
    msg = str(e) if isinstance(e, FastmaskError) else f'{type(e).__name__}: {e}'
    return ' '.join(msg.split())


def _started_run(out: Path, name: str, t0: float) -> str:
    "The newest run folder of `name` under `out` made since `t0` (a failed member's folder), or ''."
    base = out / name
    dirs = [d for d in base.iterdir() if d.is_dir() and d.stat().st_mtime >= t0 - 1] if base.is_dir() else []
    return str(max(dirs, key=lambda d: d.stat().st_mtime)) if dirs else ''


def _member(name: str, spec: RunSpec, src, prep, log) -> dict:
    "Reuse or train one member; its row of the study table (a failure is recorded, not raised)."
    recipe, out = spec.recipe, Path(spec.out)
    row, t0 = dict(recipe=name, description=recipe.description, report=recipe.report), time.time()
    try:
        d, status = find_run(out, spec), 'reused'
        if d is not None: log(f'{recipe.name}: reusing finished run {d}')
        else:
            log(f'{recipe.name}: training')
            d, status = start_run(spec, src, prep), 'trained'
        rd = RunDir(d)
        s = rd.read_summary()
        if rd.valid_preds.is_file(): s.update(scores(pd.read_csv(rd.valid_preds)))   # today's scorer, also for older runs
        row.update({k: s.get(k) for k in _SCORES + _EVAL}, status=status, wall_time_s=s.get('wall_time_s'),
                   run_dir=str(d), error='')
    except (KeyboardInterrupt, SystemExit): raise
    except Exception as e:  # noqa: BLE001 -- any failure of one member is recorded and the study goes on
        row.update(status='failed', error=_one_line(e), run_dir=_started_run(out, recipe.name, t0))
        log(f'{recipe.name}: failed: {row["error"]}')
    return row


def _cell(v, col: str = '') -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)): return '-'
    if isinstance(v, float): return f'{v:.4f}' if 'f1' in col else f'{v:g}'
    return str(v).replace('|', '\\|').replace('\n', ' ')


#: the fields whose members count as repeats of one variant (`seed_means`)
SEED_FIELDS = ('seed', 'split_seed')


def seed_means(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of each score over members that differ only in `SEED_FIELDS` (finished ones), in
    the order the variants first appear: `variant`, `runs`, then `<score>` and `<score>_std` per score with values."""
    ok = df[df['status'] != 'failed']
    if ok.empty: return pd.DataFrame()
    key = ok['recipe'].map(_without_seeds)
    cols = [c for c in _SCORES + _EVAL if c in ok.columns and pd.to_numeric(ok[c], errors='coerce').notna().any()]
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
    scores = [c for c in _SCORES + _EVAL if c in m.columns]
    lines = ['', f"## Mean over seeds ({' / '.join(SEED_FIELDS)}), ± standard deviation", '',
             '| variant | runs | ' + ' | '.join(_HEAD[c] for c in scores) + ' |', '|' + ' --- |' * (len(scores) + 2)]
    for r in m.to_dict('records'):
        cells = [_cell(r[c], c) + ('' if np.isnan(r.get(f'{c}_std', np.nan)) else f" ± {r[f'{c}_std']:.4f}") for c in scores]
        lines.append(f"| {_cell(r['variant'])} | {r['runs']} | " + ' | '.join(cells) + ' |')
    return lines


def _markdown(df: pd.DataFrame, name: str, description: str, data, overrides: dict, command: str, out: Path,
              origin: str | None = None) -> str:
    "The study table in Markdown, headed by the data (and the command that built it), the overrides and the regenerating command."
    ov = ', '.join(f'{k}={v}' for k, v in overrides.items()) or 'none'
    cols = ['recipe', 'description', 'report', 'status'] + [c for c in _SCORES + _EVAL if c in df.columns] + ['wall_time_s', 'run_dir']
    head = dict(_HEAD, description='reproduces', report="report's figure", wall_time_s='wall s', run_dir='run folder')
    lines = [f'# Study `{name}`', '', description, '', f'- data: `{data}`'] + \
            ([f'- data built by: `{origin}`'] if origin else []) + [f'- overrides: {ov}', f'- regenerate: `{command}`', f"- written: {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}", '',
             '| ' + ' | '.join(head.get(c, c) for c in cols) + ' |', '|' + ' --- |' * len(cols)]
    for r in df.to_dict('records'):
        r = dict(r, status=f"failed: {r['error']}" if r['status'] == 'failed' else r['status'])
        if r.get('run_dir'):
            p = Path(r['run_dir'])
            r['run_dir'] = p.relative_to(out.resolve()).as_posix() if p.is_relative_to(out.resolve()) else str(p)
        lines.append('| ' + ' | '.join(_cell(r.get(c), c) for c in cols) + ' |')
    return '\n'.join(lines + _seed_lines(df)) + '\n'


def _chart(df: pd.DataFrame, title: str):
    "Grouped bars: macro F1 per task (and eval F1 where known) for each member."
    cols = [c for c in _CHART if c in df.columns and df[c].notna().any()]
    fig = Figure(figsize=(max(6, 1.3 * len(df) + 2), 4.2))
    ax = fig.subplots()
    x, w = np.arange(len(df)), .8 / max(len(cols), 1)
    for i, c in enumerate(cols):
        ax.bar(x + (i - (len(cols) - 1) / 2) * w, pd.to_numeric(df[c], errors='coerce').fillna(0), w, label=_HEAD[c])
    for xi, st in zip(x, df['status']):
        if st == 'failed': ax.text(xi, .02, 'failed', ha='center', va='bottom', color='#c44e52', rotation=90)
    ax.set_xticks(x, df['recipe'], rotation=30, ha='right', fontsize=8)
    ax.set(ylim=(0, 1.15), yticks=np.linspace(0, 1, 6), ylabel='macro F1', title=title)
    ax.grid(axis='y', alpha=.3)
    if cols: ax.legend(fontsize=8, ncol=len(cols))
    return fig


def run_study(names_or_study, data='demo', out='runs', overrides: dict | None = None, quick: bool = False, log=print,
              **run_options) -> Path:
    """Run (or reuse) every member with the shared overrides; write `out/study/<name>/` and return that folder.

    `run_options` are `RunSpec.build`'s (weights, skip_bad, fix_labels, relabel, runtime, track): every member is a
    run of that specification, and a finished run is reused only when its specification matches (`find_run`)."""
    name, members, description = study_members(names_or_study)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if 'tasks' in overrides: overrides['tasks'] = tuple(overrides['tasks'])
    recipes = [resolve_spec(m, quick=quick, **overrides) for m in members]   # unknown names fail before training
    shown = dict(overrides, **({'quick': True} if quick else {}))
    base = RunSpec.build(recipes[0], data, out=out, overrides=shown, **run_options)
    src, prep, prepared = base.data.prepare()     # checked once: every member trains on (and matches) this data
    base, out = replace(base, data=prepared), Path(base.out)
    rows = []
    for i, r in enumerate(recipes):
        rows.append(_member(spec_name(members[i]), base.with_recipe(r), src, prep,
                            lambda m: log(f'study {name} [{i + 1}/{len(recipes)}] {m}')))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if src.truth is None: df = df.drop(columns=[c for c in _EVAL if c in df.columns])
    command = study_command(names_or_study, data, out, overrides, quick, base)
    md = _markdown(df, name, description, portable(data), shown, command, out, data_origin(src.root))
    fig = _chart(df, f'study {name}: macro F1 per task (validation; eval F1 on the eval truth)')
    dest = out / 'study' / name
    with atomic_dir(dest, 'study folder', replace=True) as tmp:
        df.to_csv(tmp / 'study.csv', index=False)
        (tmp / 'study.md').write_text(md)
        fig.savefig(tmp / 'study.png', format='png', dpi=100, bbox_inches='tight')
    log(f'study {name}: wrote {dest}')
    return dest


def failed_members(study_dir) -> list[str]:
    "The members a written study records as failed."
    df = pd.read_csv(Path(study_dir) / 'study.csv', keep_default_na=False)
    return df.loc[df['status'] == 'failed', 'recipe'].tolist()
