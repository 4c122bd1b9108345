"""The `fastmask` command line: parses arguments and calls library functions."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer

from fastmask.errors import FastmaskError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help='fastai recipes for the 18-class mask / gender / age photo problem.')
data_app = typer.Typer(no_args_is_help=True, help='Make, check and describe data sets.')
app.add_typer(data_app, name='data')

DATA_HELP = "competition-layout folder, a labels .csv, or 'demo' (the built-in demo data)"
PRECISION_HELP = 'auto (bf16 + channels-last on CUDA and on CPUs with native bf16, else fp32), fp32, bf16 or fp16'


def precision_option():
    return typer.Option(None, help=PRECISION_HELP)


def channels_last_option():
    return typer.Option(None, '--channels-last/--no-channels-last', help='channels-last memory format (default: auto)')


def recipe_changes(epochs=None, size=None, bs=None, lr=None, arch=None, seed=None, tasks=None, pretrained=None, sets=(),
                   **more) -> dict:
    "The recipe overrides of a command's shared options and its `--set FIELD=VALUE` items (the architecture checked)."
    from fastmask.models.backbones import check_arch
    from fastmask.recipes import parse_set
    if arch: check_arch(arch)
    return dict(epochs=epochs, size=size, bs=bs, lr=lr, arch=arch, seed=seed, pretrained=pretrained,
                tasks=tuple(tasks) if tasks else None, **more, **dict(parse_set(s) for s in sets or ()))


def check_precision(precision: str | None) -> str | None:
    "A known precision name, or a one-line error."
    from fastmask.settings import PRECISIONS
    if precision is not None and precision not in PRECISIONS:
        fail(f"--precision {precision}: one of {', '.join(PRECISIONS)}")
    return precision


def fail(msg: str, code: int = 1):
    "Print a one-line error to stderr and exit."
    typer.echo('error: ' + str(msg).replace('\r', '\\r').replace('\n', '\\n'), err=True)  # always one line
    raise typer.Exit(code)


def user_errors(f):
    "Turn user errors into one line on stderr and a non-zero exit; Ctrl-C into a short message."
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try: return f(*args, **kwargs)
        except FastmaskError as e: fail(str(e))
        except FileExistsError as e: fail(str(e))
        except KeyboardInterrupt as e: fail(str(e) or 'interrupted', 130)  # checkpoint.RunInterrupted names the resume command
    return wrapper


def show(obj: dict, title: str | None = None):
    "Print a flat dict as aligned key/value lines."
    if title: typer.echo(title)
    w = max(map(len, obj), default=0)
    for k, v in obj.items(): typer.echo(f'  {k:<{w}}  {v}')


@app.command('recipes')
@user_errors
def recipes_cmd(pattern: str = typer.Argument('*', help="shell pattern, e.g. 'swa_*'")):
    "List recipes: name and one-line description."
    from fastmask.recipes.registry import list_recipes
    rs = list_recipes(pattern)
    if not rs: fail(f"no recipe matches '{pattern}'")
    w = max(len(r.name) for r in rs)
    for r in rs: typer.echo(f'{r.name:<{w}}  {r.description}' + (f' [report: {r.report}]' if r.report else ''))


@app.command('recipe')
@user_errors
def recipe_cmd(name: str = typer.Argument(..., help='recipe name (see `fastmask recipes`)'),
               data: str = typer.Option('demo', help=DATA_HELP),
               out: Path = typer.Option(Path('runs'), help='root folder of run folders'),
               quick: bool = typer.Option(False, '--quick', help='CPU smoke run: 64 px images, five epochs'),
               epochs: Optional[int] = typer.Option(None, min=1), size: Optional[int] = typer.Option(None, min=16),
               bs: Optional[int] = typer.Option(None, min=1), lr: Optional[float] = typer.Option(None, min=0.0),
               arch: Optional[str] = typer.Option(None, help='any timm model name'),
               seed: Optional[int] = typer.Option(None),
               tasks: Optional[List[str]] = typer.Option(None, help='train only these tasks (all, mask, gender, age)'),
               pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
               weights: Optional[Path] = typer.Option(None, help='local weights file for the backbone'),
               workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes'),
               compile: bool = typer.Option(False, '--compile', help='torch.compile the model (GPU)'),
               no_cache: bool = typer.Option(False, '--no-cache', help='decode JPEGs every epoch, no image cache'),
               skip_bad: bool = typer.Option(False, '--skip-bad', help='train on the data that passes `fastmask data check`; list the rest in RUN_DIR/skipped.csv'),
               fix_labels: bool = typer.Option(False, '--fix-labels', help='correct the known label noise (recorded in config.json)'),
               relabel: Optional[Path] = typer.Option(None, help="reviewed relabel CSV (see 'fastmask data noise'; recorded in config.json)"),
               track: Optional[str] = typer.Option(None, help='log to tensorboard, mlflow or wandb (offline, in the run folder)'),
               folds: Optional[int] = typer.Option(None, min=2, help='k-fold by person: train K fold models, soft-vote them'),
               fold: Optional[int] = typer.Option(None, min=0, help='train only fold I of a k-fold recipe (a job of its own; the k-fold run reuses it)'),
               gpus: Optional[int] = typer.Option(None, min=1, help='train with DDP on N GPUs of this machine (runs torchrun)'),
               precision: Optional[str] = precision_option(), channels_last: Optional[bool] = channels_last_option(),
               set_: Optional[List[str]] = typer.Option(None, '--set', help='any recipe field, FIELD=VALUE (repeatable), e.g. --set bn=frozen --set freeze_epochs=2')):
    "Train a recipe into a new run folder."
    from fastmask.callbacks.distributed import gpus_relaunch, rank
    if gpus_relaunch(gpus, sys.argv[1:]) is not None: return
    from fastmask.settings import configure; configure(compile=compile, cache=not no_cache)
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    changes = recipe_changes(epochs, size, bs, lr, arch, seed, tasks, pretrained, set_,
                             precision=check_precision(precision), channels_last=channels_last)
    r = resolve(name, quick=quick, **changes)
    if folds or fold is not None:
        from fastmask.runners.kfold import as_kfold, fold_recipe
        if folds: r = as_kfold(r, folds)
        if fold is not None: r = fold_recipe(r, fold)
    run_dir = run_recipe(r, data, out, weights=weights, num_workers=workers, skip_bad=skip_bad, fix_labels=fix_labels,
                         relabel=relabel, track=track, overrides={k: v for k, v in dict(changes, quick=quick or None).items() if v is not None})
    from fastmask.io import read_json
    if rank(): return                                   # other DDP processes: rank 0 reports
    show({k: v for k, v in read_json(run_dir / 'summary.json').items() if 'f1' in k or k == 'wall_time_s'},
         f'run folder: {run_dir}')


@app.command('tune')
@user_errors
def tune_cmd(name: Optional[str] = typer.Argument(None, help='recipe name (not needed with --show)'),
             data: str = typer.Option('demo', help=DATA_HELP),
             out: Path = typer.Option(Path('runs'), help='root folder of run folders (default study file: OUT/tune/STUDY.db)'),
             quick: bool = typer.Option(False, '--quick', help='CPU smoke trials: 64 px images, five epochs'),
             epochs: Optional[int] = typer.Option(None, min=1), size: Optional[int] = typer.Option(None, min=16),
             bs: Optional[int] = typer.Option(None, min=1), lr: Optional[float] = typer.Option(None, min=0.0),
             arch: Optional[str] = typer.Option(None, help='any timm model name'),
             seed: Optional[int] = typer.Option(None),
             tasks: Optional[List[str]] = typer.Option(None, help='train only these tasks (all, mask, gender, age)'),
             pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
             weights: Optional[Path] = typer.Option(None, help='local weights file for the backbone'),
             workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes'),
             compile: bool = typer.Option(False, '--compile', help='torch.compile the model (GPU)'),
             no_cache: bool = typer.Option(False, '--no-cache', help='decode JPEGs every epoch, no image cache'),
             skip_bad: bool = typer.Option(False, '--skip-bad', help='train on the data that passes `fastmask data check`'),
             fix_labels: bool = typer.Option(False, '--fix-labels', help='correct the known label noise'),
             set_: Optional[List[str]] = typer.Option(None, '--set', help='any recipe field, fixed for every trial, FIELD=VALUE'),
             trials: int = typer.Option(20, min=1, help="this process's trials (workers sharing a study add theirs)"),
             timeout: Optional[float] = typer.Option(None, min=1, help='stop starting trials after this many seconds'),
             space: Optional[Path] = typer.Option(None, help="search space JSON/YAML (default: the recipe family's)"),
             metric: Optional[str] = typer.Option(None, help='summary key to maximise: valid_f1 (default), valid_f1_mask, ...'),
             pruner: str = typer.Option('median', help='median, halving or none'),
             storage: Optional[str] = typer.Option(None, help='Optuna database URL, e.g. sqlite:///tune.db, postgresql://...'),
             study_name: Optional[str] = typer.Option(None, help='join this study or create it (default: a new one)'),
             resume: bool = typer.Option(False, '--resume', help='continue --study-name; fail if it does not exist'),
             show: bool = typer.Option(False, '--show', help="print the study's trials and write its plots, train nothing")):
    "Optuna search over a recipe's fields: every trial is a run folder; --show prints a study and plots it."
    if show:
        from rich.console import Console
        from fastmask.tools.tuneshow import rich_trials_table, show_study
        study, df, files, notes = show_study(storage, study_name, out)
        Console(width=None if sys.stdout.isatty() else 200).print(rich_trials_table(df, f'study {study.study_name}: {len(df)} trial(s)'))
        for line in [f'wrote {p}' for p in files] + notes: typer.echo(line)
        return
    if name is None: fail('RECIPE: missing (the recipe to tune; see `fastmask recipes`)')
    from fastmask.settings import configure
    from fastmask.tools.tune import tune
    configure(compile=compile, cache=not no_cache)
    changes = recipe_changes(epochs, size, bs, lr, arch, seed, tasks, pretrained, set_)
    study = tune(name, data, out, trials=trials, timeout=timeout, space=space, metric=metric, pruner=pruner,
                 storage=storage, study_name=study_name, resume=resume, quick=quick, overrides=changes,
                 weights=weights, num_workers=workers, skip_bad=skip_bad, fix_labels=fix_labels, log=typer.echo)
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    if done:
        best = max(done, key=lambda t: t.value)
        typer.echo(f"best: trial {best.number} ({best.value:.4f}) {best.params} {best.user_attrs.get('run_dir', '')}")


@app.command('predict')
@user_errors
def predict_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder'),
                data: str = typer.Option('demo', help=DATA_HELP),
                out: Optional[Path] = typer.Option(None, help='submission file (default RUN_DIR/submission.csv)'),
                tta: bool = typer.Option(False, '--tta', help='average with horizontally flipped images'),
                bs: int = typer.Option(64, min=1), workers: Optional[int] = typer.Option(None, min=0),
                compile: bool = typer.Option(False, '--compile', help='torch.compile the model (GPU)'),
                no_cache: bool = typer.Option(False, '--no-cache', help='decode the JPEGs directly, no image cache'),
                onnx: bool = typer.Option(False, '--onnx', help="use RUN_DIR/model.onnx (see 'fastmask export') with onnxruntime"),
                precision: Optional[str] = precision_option(), channels_last: Optional[bool] = channels_last_option()):
    "Write a submission (ImageID, ans) for the data's eval images."
    from fastmask.settings import configure
    configure(compile=compile, cache=not no_cache, precision=check_precision(precision), channels_last=channels_last)
    from fastmask.sources.open import open_data
    from fastmask.inference.predict import predict_paths, write_submission
    if not run_dir.is_dir(): fail(f'{run_dir}: run folder does not exist')
    src = open_data(data)
    if src.eval is None: fail(f'{src.root}: has no eval/info.csv to predict')
    if onnx:
        from fastmask.tools.export import onnx_file, onnx_predict_paths
        probs = onnx_predict_paths(onnx_file(run_dir), src.eval['path'], bs=bs, num_workers=workers, tta=tta)
    else: probs = predict_paths(run_dir, src.eval['path'], bs=bs, num_workers=workers, tta=tta)
    path = write_submission(out or run_dir / 'submission.csv', src.eval, probs)
    typer.echo(f'wrote {path} ({len(src.eval)} rows)')


@app.command('evaluate')
@user_errors
def evaluate_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder (single, split-task, k-fold or ensemble)'),
                 data: str = typer.Option(..., help="a labels .csv, or a layout (or 'demo') with eval/truth.csv"),
                 out: Optional[Path] = typer.Option(None, help='output folder (default RUN_DIR/eval_<data name>)'),
                 bs: int = typer.Option(64, min=1), workers: Optional[int] = typer.Option(None, min=0),
                 tta: bool = typer.Option(False, '--tta', help='average with horizontally flipped images'),
                 precision: Optional[str] = precision_option(), channels_last: Optional[bool] = channels_last_option()):
    "Score a run on labelled images: macro F1 per task, per-class F1, confusion matrices (true age groups)."
    from fastmask.settings import configure
    from fastmask.tools.evaluate import evaluate
    configure(precision=check_precision(precision), channels_last=channels_last)
    res = evaluate(run_dir, data, out, bs=bs, num_workers=workers, tta=tta)
    show({k: v for k, v in res.items() if k.startswith('f1') or k == 'n_images'}, f"wrote {res['out']}")


@app.command('study')
@user_errors
def study_cmd(names: Optional[List[str]] = typer.Argument(None, help="a study name (see --list), or recipe names, e.g. 'cpu_split_lite0[bn=train]'"),
              data: str = typer.Option('demo', help=DATA_HELP),
              out: Path = typer.Option(Path('runs'), help='root folder of run folders (the table goes to OUT/study/NAME)'),
              list_: bool = typer.Option(False, '--list', help='list the named studies'),
              quick: bool = typer.Option(False, '--quick', help='CPU smoke runs: 64 px images, five epochs'),
              epochs: Optional[int] = typer.Option(None, min=1), size: Optional[int] = typer.Option(None, min=16),
              bs: Optional[int] = typer.Option(None, min=1), lr: Optional[float] = typer.Option(None, min=0.0),
              arch: Optional[str] = typer.Option(None, help='any timm model name'),
              seed: Optional[int] = typer.Option(None),
              tasks: Optional[List[str]] = typer.Option(None, help='train only these tasks (all, mask, gender, age)'),
              pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
              weights: Optional[Path] = typer.Option(None, help='local weights file for the backbone'),
              workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes'),
              set_: Optional[List[str]] = typer.Option(None, '--set', help='any recipe field for every member, FIELD=VALUE')):
    "Run several recipes (or a named study) with shared overrides, reusing finished runs; tabulate and chart them."
    from fastmask.tools.study import failed_members, list_studies, run_study
    if list_:
        for n, s in list_studies().items(): typer.echo(f"{n}  {s['description']}\n    {', '.join(s['members'])}")
        return
    if not names: fail('give a study name (see --list) or recipe names')
    ov = recipe_changes(epochs, size, bs, lr, arch, seed, tasks, pretrained, set_)
    dest = run_study(names[0] if len(names) == 1 else names, data, out, ov, quick=quick, weights=weights,
                     num_workers=workers)
    typer.echo((dest / 'study.md').read_text())
    if failed := failed_members(dest): fail(f"{dest}: {len(failed)} member(s) failed: {', '.join(failed)}")


@app.command('export')
@user_errors
def export_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder (single, split-task or k-fold)'),
               format: str = typer.Option('onnx', '--format', help='export format (onnx)'),
               out: Optional[Path] = typer.Option(None, help='output file (default RUN_DIR/model.onnx)'),
               opset: int = typer.Option(17, min=7), workers: Optional[int] = typer.Option(None, min=0)):
    "Export a run's models as one 18-class ONNX model, checked against PyTorch on the validation images."
    from fastmask.tools.export import export_onnx
    if format != 'onnx': fail(f"unknown export format '{format}' (onnx)")
    path = export_onnx(run_dir, out, opset=opset, num_workers=workers)
    from fastmask.io import read_json
    meta = read_json(path.with_name(path.name + '.json'))
    typer.echo(f"wrote {path} (input {meta['size']}x{meta['size']}, max |onnx - torch| = "
               f"{meta.get('max_abs_diff', float('nan')):.1e} on {meta.get('checked_images', 0)} validation images)")


@app.command('score')
@user_errors
def score_cmd(submission: Path = typer.Argument(..., help='submission CSV (ImageID, ans)'),
              truth: Path = typer.Argument(..., help='truth CSV (ImageID, ans)')):
    "Print the 18-class macro F1 and the per-task macro F1s of a submission."
    from fastmask.inference.scoring import score_files
    show(score_files(submission, truth))


@app.command('ensemble')
@user_errors
def ensemble_cmd(run_dirs: List[Path] = typer.Argument(..., help='finished run folders (same validation split)'),
                 data: str = typer.Option('demo', help=DATA_HELP),
                 out: Optional[Path] = typer.Option(None, help='submission file (default: none written)'),
                 bs: int = typer.Option(64, min=1), workers: Optional[int] = typer.Option(None, min=0)):
    "Soft-vote finished runs: print each member's valid F1 and the ensemble's, write its submission."
    from fastmask.runners.ensemble import ensemble_report
    from fastmask.sources.open import open_data
    res = ensemble_report(run_dirs, open_data(data), submission=out, bs=bs, num_workers=workers)
    show({**{f'member {d}': f1 for d, f1 in res['member_f1'].items()},
          **{k: v for k, v in res.items() if 'f1' in k and k != 'member_f1'}, 'submission': res.get('submission', '-')})


@data_app.command('demo')
@user_errors
def data_demo_cmd(out: Path = typer.Argument(..., help='folder to create'),
                  persons: int = typer.Option(300, min=4), eval_persons: int = typer.Option(60, min=0),
                  seed: int = typer.Option(0)):
    "Write the procedural demo data set in the competition layout."
    from fastmask.sources.demo import make_demo
    typer.echo(f'wrote {make_demo(out, persons=persons, eval_persons=eval_persons, seed=seed)}')


@data_app.command('proxy')
@user_errors
def data_proxy_cmd(faces: Path = typer.Option(..., help='folder (utkface) or labels CSV/JSON (fairface, csv) of real faces'),
                   format: str = typer.Option('utkface', '--format', help='utkface, fairface or csv'),
                   out: Path = typer.Option(..., help='folder to create'),
                   persons: int = typer.Option(1000, min=2), eval_persons: int = typer.Option(200, min=0),
                   seed: int = typer.Option(0, min=0),
                   detector: str = typer.Option('auto', help='auto (MTCNN if installed), mtcnn or template'),
                   min_age: Optional[int] = typer.Option(18, min=1, help="use faces this old or older (default 18: adults, as in the competition)"),
                   max_age: Optional[int] = typer.Option(None, min=1, help="use faces this old or younger (competition: 60)")):
    "Build practice data in the competition layout from real labelled faces with synthetic masks."
    from fastmask.sources.practice import make_proxy
    ages = (min_age or 1, max_age or 119)
    with typer.progressbar(length=persons + eval_persons, label='persons', file=sys.stderr,
                           hidden=not sys.stderr.isatty()) as bar:
        last = [0]
        def tick(done, total): bar.update(done - last[0]); last[0] = done
        summary = make_proxy(faces, out, format, persons, eval_persons, seed, detector, progress=tick, ages=ages)
    show(summary, f'wrote {out}')


@data_app.command('stats')
@user_errors
def data_stats_cmd(data: str = typer.Argument(..., help=DATA_HELP),
                   out: Optional[Path] = typer.Option(None, help='overview PNG to write')):
    "Print counts per mask state, gender, age group and class; draw the overview PNG with --out."
    from fastmask.sources.stats import data_stats
    counts, png = data_stats(data, out)
    for name, c in counts.items(): show(c, name)
    if png: typer.echo(f'wrote {png}')


@data_app.command('noise')
@user_errors
def data_noise_cmd(run_dir: Optional[Path] = typer.Argument(None, help='a finished k-fold run folder (else train one: --recipe)'),
                   data: str = typer.Option('demo', help=DATA_HELP),
                   recipe: Optional[str] = typer.Option(None, help='recipe to train k-fold by person (see `fastmask recipes`)'),
                   folds: int = typer.Option(5, min=2, help='folds by person'),
                   out: Optional[Path] = typer.Option(None, help='output folder (default RUNS/noise/<recipe>/<timestamp>)'),
                   runs: Path = typer.Option(Path('runs'), help='root folder of run folders (the k-fold run goes there)'),
                   top: int = typer.Option(16, min=1, help='suspects drawn in suspects.png and printed'),
                   quick: bool = typer.Option(False, '--quick', help='CPU smoke run: 64 px images, five epochs'),
                   epochs: Optional[int] = typer.Option(None, min=1), size: Optional[int] = typer.Option(None, min=16),
                   bs: Optional[int] = typer.Option(None, min=1), lr: Optional[float] = typer.Option(None, min=0.0),
                   arch: Optional[str] = typer.Option(None, help='any timm model name'),
                   seed: Optional[int] = typer.Option(None),
                   tasks: Optional[List[str]] = typer.Option(None, help='train only these tasks (all, mask, gender, age)'),
                   pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
                   weights: Optional[Path] = typer.Option(None, help='local weights file for the backbone'),
                   workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes'),
                   skip_bad: bool = typer.Option(False, '--skip-bad', help='train on the data that passes `fastmask data check`'),
                   fix_labels: bool = typer.Option(False, '--fix-labels', help='correct the known label noise first'),
                   relabel: Optional[Path] = typer.Option(None, help='apply a reviewed relabel CSV first (a second round)'),
                   set_: Optional[List[str]] = typer.Option(None, '--set', help='any recipe field, FIELD=VALUE (repeatable)')):
    "Find likely mislabelled photos and people with cleanlab on out-of-fold probabilities (needs the noise extra: cleanlab)."
    import pandas as pd
    from fastmask.io import read_json
    from fastmask.tools.noise import find_noise, noise_report
    if (run_dir is None) == (recipe is None): fail('give either RUN_DIR (a finished k-fold run) or --recipe NAME to train one')
    if run_dir is not None: res = noise_report(run_dir, out, top)
    else:
        res = find_noise(recipe, data, folds, out, runs, quick=quick, num_workers=workers, top=top, weights=weights,
                         skip_bad=skip_bad, fix_labels=fix_labels, relabel=relabel,
                         **recipe_changes(epochs, size, bs, lr, arch, seed, tasks, pretrained, set_))
    info, table = read_json(res / 'noise.json'), pd.read_csv(res / 'label_issues.csv', dtype={'person': str}, keep_default_na=False)
    show({'k-fold run': info['run'], **{f'likely errors ({t})': info['issues'][t] for t in info['tasks']},
          'files': 'label_issues.csv, suspects.png, relabel.csv'}, f'wrote {res}')
    for r in table[table['issue'].astype(str) == 'True'].head(top).itertuples(index=False):
        typer.echo(f"  #{r.rank} {r.task} {r.path or 'person ' + r.person}: {r.given} -> {r.suggested} (score {float(r.score):.3f})")


@app.command('resume')
@user_errors
def resume_cmd(run_dir: Path = typer.Argument(..., help='an interrupted run folder'),
               workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes')):
    "Continue an interrupted run from its last finished epoch."
    from fastmask.runners.run import resume_run
    from fastmask.io import read_json
    run_dir = resume_run(run_dir, num_workers=workers)
    show({k: v for k, v in read_json(run_dir / 'summary.json').items() if 'f1' in k or k == 'wall_time_s'},
         f'run folder: {run_dir}')


@data_app.command('check')
@user_errors
def data_check_cmd(data: str = typer.Argument(..., help=DATA_HELP),
                   no_cache: bool = typer.Option(False, '--no-cache', help='decode every image again')):
    "Report every problem of a data set, one `path: reason` line each; exit 1 if any (label-noise notices do not count)."
    from fastmask.sources.check import check_data
    report = check_data(data, cache=not no_cache)
    for line in report.lines(): typer.echo(line)
    if not report.ok: fail(report.summary())
    typer.echo(report.summary())


@app.command('runs')
@user_errors
def runs_cmd(pattern: str = typer.Argument('*', help="recipe name or 'recipe/stamp' shell pattern"),
             root: Path = typer.Option(Path('runs'), help='root folder of run folders'),
             sort: str = typer.Option('f1', help='f1, f1_mask, f1_gender, f1_age, eval_f1, wall_s, started, recipe, run'),
             csv: bool = typer.Option(False, '--csv', help='print CSV instead of a table')):
    "Table of finished and unfinished runs, best validation macro F1 first."
    from fastmask.runs import rich_runs_table, runs_table
    df = runs_table(root, pattern, sort)
    if csv: return typer.echo(df.to_csv(index=False), nl=False)
    if df.empty: fail(f"no run under {root} matches '{pattern}'")
    from rich.console import Console
    Console(width=None if sys.stdout.isatty() else 200).print(rich_runs_table(df, f'{len(df)} run(s) under {root}'))


@app.command('report')
@user_errors
def report_cmd(run_dir: Path = typer.Argument(..., help='a run folder'),
               k: int = typer.Option(9, min=1, help='how many confidently wrong images to show')):
    "Write PNG plots into a run folder: curves, confusion matrices, per-class F1, top losses."
    from fastmask.plots import report
    for p in report(run_dir, k=k): typer.echo(f'wrote {p}')


@app.command('lr-find')
@user_errors
def lr_find_cmd(name: str = typer.Argument(..., help='recipe name (see `fastmask recipes`)'),
                data: str = typer.Option('demo', help=DATA_HELP),
                task: Optional[str] = typer.Option(None, help="task model (default the recipe's first)"),
                quick: bool = typer.Option(False, '--quick', help='CPU smoke run: small images'),
                size: Optional[int] = typer.Option(None, min=16), bs: Optional[int] = typer.Option(None, min=1),
                arch: Optional[str] = typer.Option(None, help='any timm model name'),
                pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
                num_it: int = typer.Option(100, min=25, help='mini-batches of the range test'),
                out: Optional[Path] = typer.Option(None, help='plot file (default runs/lr_find/NAME_TASK.png)'),
                workers: Optional[int] = typer.Option(0, min=0, help='data loader worker processes'),
                precision: Optional[str] = precision_option(), channels_last: Optional[bool] = channels_last_option(),
                set_: Optional[List[str]] = typer.Option(None, '--set', help='any recipe field, FIELD=VALUE (repeatable)')):
    "fastai's learning-rate finder on a recipe's learner: save the plot, print the suggested rates."
    from fastmask.recipes import parse_set
    from fastmask.tools.lrfind import lr_find
    changes = dict(size=size, bs=bs, arch=arch, pretrained=pretrained, precision=check_precision(precision),
                   channels_last=channels_last, **dict(parse_set(s) for s in set_ or ()))
    sugg, path = lr_find(name, data, task, quick=quick, out=out, num_it=num_it, num_workers=workers,
                         **{k: v for k, v in changes.items() if v is not None})
    show({k: f'{v:.2e}' for k, v in sugg.items()}, f'suggested learning rates (plot: {path})')


@data_app.command('cache')
@user_errors
def data_cache_cmd(clear: bool = typer.Option(False, '--clear', help='delete every decoded-image cache')):
    "List the decoded-image caches (under $FASTMASK_CACHE/images) and their sizes."
    from fastmask.data.imagecache import cache_dir, cache_entries, clear_cache, human_bytes
    if clear: return typer.echo(f'freed {human_bytes(clear_cache())}')
    es = cache_entries()
    for e in es: typer.echo(f"  {e['key']}  {e['images']} images  {e['size']}px  {human_bytes(e['bytes'])}")
    typer.echo(f"{cache_dir()}: {len(es)} cache(s), {human_bytes(sum(e['bytes'] for e in es))}")


def main():
    "Entry point for `python -m fastmask`."
    app(prog_name='fastmask')


if __name__ == '__main__':
    sys.exit(main())
