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

from fastmask.options import DATA_HELP, takes


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
@takes('data', 'out', 'recipe', 'prep', 'weights', 'speed', 'track')
def recipe_cmd(name: str = typer.Argument(..., help='recipe name (see `fastmask recipes`)'),
               folds: Optional[int] = typer.Option(None, min=2, help='k-fold by person: train K fold models, soft-vote them'),
               fold: Optional[int] = typer.Option(None, min=0, help='train only fold I of a k-fold recipe (a job of its own; the k-fold run reuses it)'),
               gpus: Optional[int] = typer.Option(None, min=1, help='train with DDP on N GPUs of this machine (runs torchrun)'), *, o):
    "Train a recipe into a new run folder."
    from fastmask.callbacks.distributed import gpus_relaunch, rank
    if gpus_relaunch(gpus, sys.argv[1:]) is not None: return
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import start_run
    changes = o.changes()
    r = resolve(name, quick=o.quick, **changes)
    if folds or fold is not None:
        from fastmask.runners.kfold import as_kfold, fold_recipe
        if folds: r = as_kfold(r, folds)
        if fold is not None: r = fold_recipe(r, fold)
    run_dir = start_run(o.spec(r, changes))
    if rank(): return                                   # other DDP processes: rank 0 reports
    show_scores(run_dir)


def show_scores(run_dir: Path):
    "Print a finished run's F1 scores and wall time under its folder."
    from fastmask.rundir import RunDir
    show({k: v for k, v in RunDir(run_dir).read_summary().items() if 'f1' in k or k == 'wall_time_s'},
         f'run folder: {run_dir}')


@app.command('tune')
@user_errors
@takes('data', 'out', 'recipe', 'prep', 'weights', 'speed')
def tune_cmd(name: Optional[str] = typer.Argument(None, help='recipe name (not needed with --show)'),
             trials: int = typer.Option(20, min=1, help="this process's trials (workers sharing a study add theirs)"),
             timeout: Optional[float] = typer.Option(None, min=1, help='stop starting trials after this many seconds'),
             space: Optional[Path] = typer.Option(None, help="search space JSON/YAML (default: the recipe family's)"),
             metric: Optional[str] = typer.Option(None, help='summary key to maximise: valid_f1 (default), valid_f1_mask, ...'),
             pruner: str = typer.Option('median', help='median, halving or none'),
             storage: Optional[str] = typer.Option(None, help='Optuna database URL, e.g. sqlite:///tune.db, postgresql://...'),
             study_name: Optional[str] = typer.Option(None, help='join this study or create it (default: a new one)'),
             resume: bool = typer.Option(False, '--resume', help='continue --study-name; fail if it does not exist'),
             show: bool = typer.Option(False, '--show', help="print the study's trials and write its plots, train nothing"), *, o):
    "Optuna search over a recipe's fields: every trial is a run folder; --show prints a study and plots it."
    if show:
        from rich.console import Console
        from fastmask.tools.tuneshow import rich_trials_table, show_study
        study, df, files, notes = show_study(storage, study_name, o.out)
        Console(width=None if sys.stdout.isatty() else 200).print(rich_trials_table(df, f'study {study.study_name}: {len(df)} trial(s)'))
        for line in [f'wrote {p}' for p in files] + notes: typer.echo(line)
        return
    if name is None: fail('RECIPE: missing (the recipe to tune; see `fastmask recipes`)')
    from fastmask.recipes.registry import resolve
    from fastmask.tools.tune import tune
    changes = o.changes()
    study = tune(o.spec(resolve(name, quick=o.quick, **changes), changes), trials=trials, timeout=timeout, space=space,
                 metric=metric, pruner=pruner, storage=storage, study_name=study_name, resume=resume, log=typer.echo)
    done = [t for t in study.trials if t.state.name == 'COMPLETE']
    if done:
        best = max(done, key=lambda t: t.value)
        typer.echo(f"best: trial {best.number} ({best.value:.4f}) {best.params} {best.user_attrs.get('run_dir', '')}")


@app.command('predict')
@user_errors
@takes('data', 'speed')
def predict_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder'),
                out: Optional[Path] = typer.Option(None, help='submission file (default RUN_DIR/submission.csv)'),
                tta: bool = typer.Option(False, '--tta', help='average with horizontally flipped images'),
                bs: int = typer.Option(64, min=1),
                onnx: bool = typer.Option(False, '--onnx', help="use RUN_DIR/model.onnx (see 'fastmask export') with onnxruntime"), *, o):
    "Write a submission (ImageID, ans) for the data's eval images, at the run's own precision unless told otherwise."
    from fastmask.sources.open import open_data
    from fastmask.inference.predict import predict_paths, run_runtime, write_submission
    from fastmask.rundir import RunDir
    if not run_dir.is_dir(): fail(f'{run_dir}: run folder does not exist')
    src, rt = open_data(o.data), o.runtime(run_runtime(run_dir))
    if src.eval is None: fail(f'{src.root}: has no eval/info.csv to predict')
    if onnx:
        from fastmask.tools.export import onnx_file, onnx_predict_paths
        probs = onnx_predict_paths(onnx_file(run_dir), src.eval['path'], bs=bs, num_workers=rt.num_workers, tta=tta)
    else: probs = predict_paths(run_dir, src.eval['path'], bs=bs, runtime=rt, tta=tta)
    path = write_submission(out or RunDir(run_dir).submission, src.eval, probs)
    typer.echo(f'wrote {path} ({len(src.eval)} rows)')


@app.command('evaluate')
@user_errors
@takes('speed')
def evaluate_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder (single, split-task, k-fold or ensemble)'),
                 data: str = typer.Option(..., help="a labels .csv, or a layout (or 'demo') with eval/truth.csv"),
                 out: Optional[Path] = typer.Option(None, help='output folder (default RUN_DIR/eval_<data name>)'),
                 bs: int = typer.Option(64, min=1),
                 tta: bool = typer.Option(False, '--tta', help='average with horizontally flipped images'), *, o):
    "Score a run on labelled images: macro F1 per task, per-class F1, confusion matrices (true age groups)."
    from fastmask.inference.predict import run_runtime
    from fastmask.tools.evaluate import evaluate
    rt = o.runtime(run_runtime(run_dir)) if run_dir.is_dir() else None
    res = evaluate(run_dir, data, out, bs=bs, runtime=rt, tta=tta)
    show({k: v for k, v in res.items() if k.startswith('f1') or k in ('n_images', 'precision')}, f"wrote {res['out']}")


@app.command('study')
@user_errors
@takes('data', 'out', 'recipe', 'prep', 'weights', 'speed')
def study_cmd(names: Optional[List[str]] = typer.Argument(None, help="a study name (see --list), or recipe names, e.g. 'cpu_split_lite0[bn=train]'"),
              list_: bool = typer.Option(False, '--list', help='list the named studies'),
              eval_: Optional[List[str]] = typer.Option(None, '--eval', help='also score every member on this labelled data set (a labels .csv, or a layout with eval truth); repeatable: train on one set of faces, score on others'),
              name: Optional[str] = typer.Option(None, '--name', help="the study folder's name under OUT/study (default: the study's name, @ the data's name, @on- the --eval sets' names)"), *, o):
    "Run several recipes (or a named study) with shared overrides, reusing finished runs of the same specification; tabulate and chart them (OUT/study/NAME@DATA)."
    from fastmask.tools.study import failed_members, list_studies, run_study
    if list_:
        for n, s in list_studies().items(): typer.echo(f"{n}  {s['description']}\n    {', '.join(s['members'])}")
        return
    if not names: fail('give a study name (see --list) or recipe names')
    dest = run_study(names[0] if len(names) == 1 else names, o.data, o.out, o.changes(), quick=o.quick, evals=eval_ or (), name=name,
                     **{k: v for k, v in o.build_options().items() if k != 'track'})
    typer.echo((dest / 'study.md').read_text())
    if failed := failed_members(dest): fail(f"{dest}: {len(failed)} member(s) failed: {', '.join(failed)}")


@app.command('export')
@user_errors
@takes('speed')
def export_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder (single, split-task or k-fold)'),
               format: str = typer.Option('onnx', '--format', help='export format (onnx)'),
               out: Optional[Path] = typer.Option(None, help='output file (default RUN_DIR/model.onnx)'),
               opset: int = typer.Option(17, min=7), *, o):
    "Export a run's models as one 18-class ONNX model, checked against PyTorch on the validation images."
    from fastmask.tools.export import export_onnx
    if format != 'onnx': fail(f"unknown export format '{format}' (onnx)")
    path = export_onnx(run_dir, out, opset=opset, num_workers=o.workers)
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
@takes('data', 'speed')
def ensemble_cmd(run_dirs: List[Path] = typer.Argument(..., help='finished run folders (same validation split)'),
                 out: Optional[Path] = typer.Option(None, help='submission file (default: none written)'),
                 bs: int = typer.Option(64, min=1), *, o):
    "Soft-vote finished runs: print each member's valid F1 and the ensemble's, write its submission."
    from fastmask.inference.predict import run_runtime
    from fastmask.runners.ensemble import ensemble_report
    from fastmask.sources.open import open_data
    rt = o.runtime(run_runtime(run_dirs[0])) if run_dirs[0].is_dir() else None   # the first member's, as told
    res = ensemble_report(run_dirs, open_data(o.data), submission=out, bs=bs, runtime=rt)
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
def data_proxy_cmd(faces: List[Path] = typer.Option(..., help='folder of UTKFace-named faces, or a labels CSV/JSON (path, gender, age: AAF, FairFace, any); repeat to mix sources'),
                   format: Optional[List[str]] = typer.Option(None, '--format', help='auto (default: a labels file is a table, a folder UTKFace names), utkface, aaf, fairface or csv; once for all sources or once per --faces'),
                   out: Path = typer.Option(..., help='folder to create'),
                   persons: int = typer.Option(1000, min=2), eval_persons: int = typer.Option(200, min=0),
                   seed: int = typer.Option(0, min=0),
                   detector: str = typer.Option('auto', help='auto (MTCNN if installed), mtcnn or template'),
                   min_age: Optional[int] = typer.Option(18, min=1, help="use faces this old or older (default 18: adults, as in the competition)"),
                   max_age: Optional[int] = typer.Option(None, min=1, help="use faces this old or younger (competition: 60)"),
                   balance: bool = typer.Option(False, '--balance', help='draw as evenly from each source as their sizes allow (default: in proportion to them)'),
                   framing: str = typer.Option('source', help="source (default: a wide oval with hair where the source crop has it) or face (the same face oval from every source; helps one source's model on another's portraits, costs the hair's cues)")):
    "Build practice data in the competition layout from real labelled faces with synthetic masks (one source or a mix)."
    from fastmask.sources.landmarks import check_detector
    from fastmask.sources.practice import check_framing, make_proxy
    for opt, check, value in (('--detector', check_detector, detector), ('--framing', check_framing, framing)):
        try: check(value)                       # before any face is read
        except ValueError as e: fail(f'{opt}: {e}')
    fmts = format or ['auto']
    if len(fmts) not in (1, len(faces)): fail(f'--format: give one for every source or one per --faces ({len(faces)}), not {len(fmts)}')
    sources = list(zip(faces, fmts * len(faces) if len(fmts) == 1 else fmts))
    ages = (min_age or 1, max_age or 119)
    with typer.progressbar(length=persons + eval_persons, label='persons', file=sys.stderr,
                           hidden=not sys.stderr.isatty()) as bar:
        last = [0]
        def tick(done, total): bar.update(done - last[0]); last[0] = done
        summary = make_proxy(sources, out, persons=persons, eval_persons=eval_persons, seed=seed, detector=detector,
                             progress=tick, ages=ages, balance=balance, framing=framing)
    show({k: v for k, v in summary.items() if k != 'mix'}, f'wrote {out}')
    for m in summary['mix']: typer.echo(f"  {m['source']} ({m['format']}): {m['persons']} persons, {m['eval_persons']} eval persons")


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
@takes('data', 'recipe', 'prep', 'weights', 'speed')
def data_noise_cmd(run_dir: Optional[Path] = typer.Argument(None, help='a finished k-fold run folder (else train one: --recipe)'),
                   recipe: Optional[str] = typer.Option(None, help='recipe to train k-fold by person (see `fastmask recipes`)'),
                   folds: int = typer.Option(5, min=2, help='folds by person'),
                   out: Optional[Path] = typer.Option(None, help='output folder (default RUNS/noise/<recipe>/<timestamp>)'),
                   runs: Path = typer.Option(Path('runs'), help='root folder of run folders (the k-fold run goes there)'),
                   top: int = typer.Option(16, min=1, help='suspects drawn in suspects.png and printed'), *, o):
    "Find likely mislabelled photos and people with cleanlab on out-of-fold probabilities (needs the noise extra: cleanlab)."
    import pandas as pd
    from fastmask.io import read_json
    from fastmask.tools.noise import find_noise, noise_report
    if (run_dir is None) == (recipe is None): fail('give either RUN_DIR (a finished k-fold run) or --recipe NAME to train one')
    if run_dir is not None: res = noise_report(run_dir, out, top)
    else:
        from fastmask.recipes.registry import resolve
        changes = o.changes()
        res = find_noise(o.spec(resolve(recipe, quick=o.quick, **changes), changes, out=runs), folds, out, top)
    info, table = read_json(res / 'noise.json'), pd.read_csv(res / 'label_issues.csv', dtype={'person': str}, keep_default_na=False)
    show({'k-fold run': info['run'], **{f'likely errors ({t})': info['issues'][t] for t in info['tasks']},
          'files': 'label_issues.csv, suspects.png, relabel.csv'}, f'wrote {res}')
    for r in table[table['issue'].astype(str) == 'True'].head(top).itertuples(index=False):
        typer.echo(f"  #{r.rank} {r.task} {r.path or 'person ' + r.person}: {r.given} -> {r.suggested} (score {float(r.score):.3f})")


@app.command('resume')
@user_errors
@takes('speed')
def resume_cmd(run_dir: Path = typer.Argument(..., help='an interrupted run folder'),
               gpus: Optional[int] = typer.Option(None, min=1, help='continue with DDP on N GPUs of this machine (runs torchrun)'), *, o):
    """Continue an interrupted run from its last finished epoch, with the specification it recorded (speed options
    override its runtime); a run started on several GPUs may continue on any number of processes."""
    from fastmask.callbacks.distributed import gpus_relaunch, rank
    if gpus_relaunch(gpus, sys.argv[1:]) is not None: return
    from fastmask.inference.predict import run_runtime
    from fastmask.runners.run import resume_run
    rt = o.runtime(run_runtime(run_dir)) if run_dir.is_dir() else None
    run_dir = resume_run(run_dir, runtime=rt)
    if not rank(): show_scores(run_dir)


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
@takes('data', 'recipe', 'prep', 'weights', 'speed')
def lr_find_cmd(name: str = typer.Argument(..., help='recipe name (see `fastmask recipes`)'),
                task: Optional[str] = typer.Option(None, help="task model (default the recipe's first)"),
                num_it: int = typer.Option(100, min=25, help='mini-batches of the range test'),
                out: Optional[Path] = typer.Option(None, help='plot file (default runs/lr_find/NAME_TASK.png)'), *, o):
    "fastai's learning-rate finder on a recipe's learner (resolved as `fastmask recipe` does): save the plot, print the suggested rates."
    from fastmask.runspec import DataSpec
    from fastmask.runtime import Runtime
    from fastmask.tools.lrfind import lr_find
    src, _, _ = DataSpec.of(o.data, o.skip_bad, o.fix_labels, o.relabel).prepare()   # checked and prepared as for training
    sugg, path = lr_find(name, src, task, quick=o.quick, out=out, num_it=num_it, weights=o.weights,
                         runtime=o.runtime(Runtime(num_workers=0)), **{k: v for k, v in o.changes().items() if v is not None})
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


@app.command('app')
@user_errors
def app_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder (any kind: task models, 18-class, k-fold, ensemble, probe)'),
            host: str = typer.Option('127.0.0.1', help='address to bind (0.0.0.0: every interface of this machine)'),
            port: Optional[int] = typer.Option(None, min=1, max=65535, help='port (default: the first free one from 7860)'),
            share: bool = typer.Option(False, '--share', help="also a public link through Gradio's share servers"),
            export: Optional[Path] = typer.Option(None, '--export', help='write a self-contained Space folder (ONNX + Gradio, no torch) instead of serving')):
    "A web page for a run (the app extra, Gradio): your photo or webcam in, faces found, mask / gender / age out; its mistakes; the run."
    if not run_dir.is_dir(): fail(f'{run_dir}: run folder does not exist')
    if export is not None:
        from fastmask.app.export import export_space
        out = export_space(run_dir, export)
        return typer.echo(f'wrote {out}; try it: cd {out} && pip install -r requirements.txt && python app.py')
    from fastmask.app.page import serve
    serve(run_dir, host=host, port=port, share=share)


def main():
    "Entry point for `python -m fastmask`."
    app(prog_name='fastmask')


if __name__ == '__main__':
    sys.exit(main())
