"""`fastmask study`: several recipes (or a named study) with shared overrides, resumable, in one table and chart.

A study reuses every member that already has a finished run of the same specification under `--out`
(`runners.run.find_run`: the resolved recipe's settings, the data and its fingerprint, `--skip-bad`, `--fix-labels`,
`--relabel` and `--weights` files by content), trains the others with `run_recipe`, records a member that fails with its
one-line error and goes on, and writes `--out/study/<folder>/` (`study.csv`, `study.md`, `study.png`) in one swap: the
folder is `--name`, or the study's name, `@` the training data's name, and `@on-` the `--eval` sets' names (`study_folder`),
so the same members on other data never overwrite each other's table.
A member is a recipe name, optionally with its own settings: `cpu_split_lite0[bn=train,epochs=2]` (any recipe
field, as `--set`), so one study compares variants of one recipe.
"""
from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fastmask.errors import FastmaskError
from fastmask.inference.scoring import scores
from fastmask.io import atomic_dir
from fastmask.recipes.spec import resolve_spec, spec_name
from fastmask.rundir import RunDir
from fastmask.runners.run import find_run, start_run
from fastmask.runspec import RunSpec
from fastmask.runtime import Runtime
from fastmask.tools.evaluate import data_name, evaluate, labelled
from fastmask.tools.studytable import (COLUMNS, EVAL, SCORES, SEED_FIELDS, chart, cross_columns, data_origin,  # noqa: F401
                                      markdown, portable, seed_means)

__all__ = ['STUDIES', 'COLUMNS', 'register_study', 'list_studies', 'study_members', 'study_folder', 'run_study', 'study_command',
           'failed_members',
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


def study_folder(name: str, data: str, evals=(), given: str | None = None) -> str:
    """The folder name of a study under `out/study/`: `given` (checked), else `name@data[@on-eval1+eval2]` from the
    study's name, the training data's name and the `--eval` sets' names (hashed beyond 120 characters)."""
    if given is not None:
        if not given.strip() or given in ('.', '..') or any(c in given for c in '/\\:*?"<>|') or given != given.strip():
            raise StudyError(f"--name {given!r}: not a folder name (no path separators, no leading or trailing spaces)")
        return given
    folder = f"{name}@{data}" + (f"@on-{'+'.join(evals)}" if evals else '')
    if len(folder) > 120: folder = f"{folder[:100]}-{hashlib.sha1(folder.encode()).hexdigest()[:8]}"
    return folder


def study_command(names, data, out, overrides: dict, quick: bool = False, base: RunSpec | None = None, evals=(),
                  folder: str | None = None) -> str:
    "The `fastmask study` command line that regenerates a study (data and out as portable paths)."
    names = [names] if isinstance(names, str) else list(names)
    args = ['fastmask', 'study', *names, '--data', portable(data), '--out', portable(out)] + (['--quick'] if quick else [])
    if folder is not None: args += ['--name', folder]
    for k, v in overrides.items():
        if v is None: continue
        if k == 'pretrained': args.append('--pretrained' if v else '--no-pretrained')
        elif k == 'tasks': args += [a for t in v for a in ('--tasks', t)]
        elif k in OVERRIDES: args += [f'--{k}', str(v)]
        else: args += ['--set', f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"]
    args += [a for e in evals for a in ('--eval', portable(e))]
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


def _one_line(e: BaseException) -> str:
    msg = str(e) if isinstance(e, FastmaskError) else f'{type(e).__name__}: {e}'
    return ' '.join(msg.split())


def _started_run(out: Path, name: str, t0: float) -> str:
    "The newest run folder of `name` under `out` made since `t0` (a failed member's folder), or ''."
    base = out / name
    dirs = [d for d in base.iterdir() if d.is_dir() and d.stat().st_mtime >= t0 - 1] if base.is_dir() else []
    return str(max(dirs, key=lambda d: d.stat().st_mtime)) if dirs else ''


def _member(name: str, spec: RunSpec, src, prep, log, evals: dict | None = None) -> dict:
    """Reuse or train one member; its row of the study table (a failure is recorded, not raised), with its scores on
    each other labelled data set of `evals` (`{name: data}`, written by `evaluate` into the run folder)."""
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
        row.update({k: s.get(k) for k in SCORES + EVAL}, status=status, wall_time_s=s.get('wall_time_s'),
                   run_dir=str(d), error='')
        for ename, edata in (evals or {}).items():
            log(f'{recipe.name}: scoring on {ename}')
            res = evaluate(d, edata, runtime=spec.runtime)
            row.update({c: res.get(c.split(':', 1)[1]) for c in cross_columns(ename)})
    except (KeyboardInterrupt, SystemExit): raise
    except Exception as e:  # noqa: BLE001 -- any failure of one member is recorded and the study goes on
        row.update(status='failed', error=_one_line(e), run_dir=_started_run(out, recipe.name, t0))
        log(f'{recipe.name}: failed: {row["error"]}')
    return row


def run_study(names_or_study, data='demo', out='runs', overrides: dict | None = None, quick: bool = False, log=print,
              evals=(), name: str | None = None, **run_options) -> Path:
    """Run (or reuse) every member with the shared overrides; write `out/study/<folder>/` and return that folder
    (`name`, else `study_folder`'s name from the study, the data and the eval sets).

    `run_options` are `RunSpec.build`'s (weights, skip_bad, fix_labels, relabel, runtime, track): every member is a
    run of that specification, and a finished run is reused only when its specification matches (`find_run`).
    `evals`: other labelled data sets (labels CSVs or layouts with eval truth) every member is also scored on —
    cross-data-set columns `{name}:f1`, `{name}:f1_gender`, ... (train on one set of faces, score on others)."""
    given, (name, members, description) = name, study_members(names_or_study)
    if given is not None: study_folder(name, '', given=given)    # a bad --name fails before any work
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if 'tasks' in overrides: overrides['tasks'] = tuple(overrides['tasks'])
    recipes = [resolve_spec(m, quick=quick, **overrides) for m in members]   # unknown names fail before training
    shown = dict(overrides, **({'quick': True} if quick else {}))
    base = RunSpec.build(recipes[0], data, out=out, overrides=shown, **run_options)
    src, prep, prepared = base.data.prepare()     # checked once: every member trains on (and matches) this data
    base, out = replace(base, data=prepared), Path(base.out)
    named = {labelled(e)[1]: e for e in evals}                  # each checked (and named) before any training
    if len(named) != len(evals): raise StudyError(f"--eval: two data sets share a name ({', '.join(map(str, evals))})")
    rows = []
    for i, r in enumerate(recipes):
        rows.append(_member(spec_name(members[i]), base.with_recipe(r), src, prep,
                            lambda m: log(f'study {name} [{i + 1}/{len(recipes)}] {m}'), named))
    df = pd.DataFrame(rows, columns=COLUMNS[:-3] + [c for n in named for c in cross_columns(n)] + COLUMNS[-3:])
    if src.truth is None: df = df.drop(columns=[c for c in EVAL if c in df.columns])
    command = study_command(names_or_study, data, out, overrides, quick, base, evals, given)
    md = markdown(df, name, description, portable(data), shown, command, out, data_origin(src.root))
    fig = chart(df, f'study {name}: macro F1 per task (validation; eval F1 on the eval truth)')
    dest = out / 'study' / study_folder(name, data_name(src, data), list(named), given)
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
