"""The `fastmask` command line: parses arguments and calls library functions."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import FastmaskError

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help='fastai recipes for the 18-class mask / gender / age photo problem.')
data_app = typer.Typer(no_args_is_help=True, help='Make, check and describe data sets.')
app.add_typer(data_app, name='data')

DATA_HELP = "competition-layout folder, a labels .csv, or 'demo' (the built-in demo data)"


def fail(msg: str, code: int = 1):
    "Print a one-line error to stderr and exit."
    typer.echo(f'error: {msg}', err=True)
    raise typer.Exit(code)


def user_errors(f):
    "Turn user errors into one line on stderr and a non-zero exit; Ctrl-C into a short message."
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try: return f(*args, **kwargs)
        except FastmaskError as e: fail(str(e))
        except FileExistsError as e: fail(str(e))
        except KeyboardInterrupt: fail('interrupted', 130)
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
    from .recipes import list_recipes
    rs = list_recipes(pattern)
    if not rs: fail(f"no recipe matches '{pattern}'")
    w = max(len(r.name) for r in rs)
    for r in rs: typer.echo(f'{r.name:<{w}}  {r.description}' + (f' [report: {r.report}]' if r.report else ''))


@app.command('recipe')
@user_errors
def recipe_cmd(name: str = typer.Argument(..., help='recipe name (see `fastmask recipes`)'),
               data: str = typer.Option('demo', help=DATA_HELP),
               out: Path = typer.Option(Path('runs'), help='root folder of run folders'),
               quick: bool = typer.Option(False, '--quick', help='CPU smoke run: small images, two epochs'),
               epochs: Optional[int] = typer.Option(None, min=1), size: Optional[int] = typer.Option(None, min=16),
               bs: Optional[int] = typer.Option(None, min=1), lr: Optional[float] = typer.Option(None, min=0.0),
               arch: Optional[str] = typer.Option(None, help='any timm model name'),
               seed: Optional[int] = typer.Option(None),
               tasks: Optional[List[str]] = typer.Option(None, help='train only these tasks (all, mask, gender, age)'),
               pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained'),
               weights: Optional[Path] = typer.Option(None, help='local weights file for the backbone'),
               workers: Optional[int] = typer.Option(None, min=0, help='data loader worker processes')):
    "Train a recipe into a new run folder."
    from .recipes import resolve
    from .train import run_recipe
    from .models import check_arch
    if arch: check_arch(arch)
    changes = dict(epochs=epochs, size=size, bs=bs, lr=lr, arch=arch, seed=seed, pretrained=pretrained,
                   tasks=tuple(tasks) if tasks else None)
    r = resolve(name, quick=quick, **changes)
    run_dir = run_recipe(r, data, out, weights=weights, num_workers=workers,
                         overrides={k: v for k, v in dict(changes, quick=quick).items() if v not in (None, False)})
    from .io import read_json
    show({k: v for k, v in read_json(run_dir / 'summary.json').items() if 'f1' in k or k == 'wall_time_s'},
         f'run folder: {run_dir}')


@app.command('predict')
@user_errors
def predict_cmd(run_dir: Path = typer.Argument(..., help='a finished run folder'),
                data: str = typer.Option('demo', help=DATA_HELP),
                out: Optional[Path] = typer.Option(None, help='submission file (default RUN_DIR/submission.csv)'),
                tta: bool = typer.Option(False, '--tta', help='average with horizontally flipped images'),
                bs: int = typer.Option(64, min=1), workers: Optional[int] = typer.Option(None, min=0)):
    "Write a submission (ImageID, ans) for the data's eval images."
    from .layout import open_data
    from .predict import predict_paths, write_submission
    if not run_dir.is_dir(): fail(f'{run_dir}: run folder does not exist')
    src = open_data(data)
    if src.eval is None: fail(f'{src.root}: has no eval/info.csv to predict')
    path = write_submission(out or run_dir / 'submission.csv', src.eval,
                            predict_paths(run_dir, src.eval['path'], bs=bs, num_workers=workers, tta=tta))
    typer.echo(f'wrote {path} ({len(src.eval)} rows)')


@app.command('score')
@user_errors
def score_cmd(submission: Path = typer.Argument(..., help='submission CSV (ImageID, ans)'),
              truth: Path = typer.Argument(..., help='truth CSV (ImageID, ans)')):
    "Print the 18-class macro F1 and the per-task macro F1s of a submission."
    from .predict import score_files
    show(score_files(submission, truth))


@data_app.command('demo')
@user_errors
def data_demo_cmd(out: Path = typer.Argument(..., help='folder to create'),
                  persons: int = typer.Option(300, min=4), eval_persons: int = typer.Option(60, min=0),
                  seed: int = typer.Option(0)):
    "Write the procedural demo data set in the competition layout."
    from .demo import make_demo
    typer.echo(f'wrote {make_demo(out, persons=persons, eval_persons=eval_persons, seed=seed)}')


def main():
    "Entry point for `python -m fastmask`."
    app(prog_name='fastmask')


if __name__ == '__main__':
    sys.exit(main())
