"""`fastmask evaluate`: score a finished run on any labelled images, per task and per class.

The truth's age groups always use the standard cut points (<30, 30-59, >=60), whatever `age_cut` the run trained
with: a run trained with '>= 60' labelled from 57 is scored on the true groups, like `summary.json`'s `valid_f1*`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from matplotlib.figure import Figure

from fastmask.errors import FastmaskError
from fastai.torch_core import default_device

from fastmask.inference.predict import as_18class, run_models, run_runtime, soft_vote, split_tasks, task_probs
from fastmask.inference.scoring import macro_f1
from fastmask.io import write_csv, write_json
from fastmask.labels import DEFAULT_AGE_CUT, TASKS, decode, task_names
from fastmask.plots import plot_class_f1, plot_confusion, save_figure
from fastmask.recipes.registry import Recipe
from fastmask.rundir import RunDir
from fastmask.runtime import Runtime, resolve_precision
from fastmask.sources.open import open_data

__all__ = ['EvaluateError', 'run_parts', 'run_tasks', 'per_task', 'run_probs', 'labelled', 'evaluate']

_SPLIT = ('mask', 'gender', 'age')


class EvaluateError(FastmaskError, ValueError):
    "A run folder or labelled data that cannot be evaluated."


def run_parts(run_dir) -> list[Path]:
    "The run folders whose predictions a run averages: its k-fold folds or ensemble members; [] if it has models."
    rd = RunDir(run_dir)
    if rd.models(): return []
    if folds := rd.folds(): return [f.path for f in folds]
    parts = list(rd.members().values())
    gone = [p for p in parts if not p.is_dir()]
    if gone: raise EvaluateError(f'{rd.members_file}: member run folder {gone[0]} does not exist')
    return parts


def _derivable(tasks) -> tuple[str, ...]:
    "Tasks predictable from these heads: an 18-class head gives every task, the three task heads give 18 classes."
    ts = set(tasks)
    if 'all' in ts: ts |= set(_SPLIT)
    if set(_SPLIT) <= ts: ts.add('all')
    return tuple(t for t in TASKS if t in ts)


def _external_age(run_dir: Path) -> bool:
    cfg = RunDir(run_dir).config_or_empty()
    return 'recipe' in cfg and bool(Recipe.from_dict(cfg['recipe']).age_model)


def run_tasks(run_dir) -> tuple[str, ...]:
    "The tasks a run folder can predict (without predicting): its heads, plus what marginals or products give."
    run_dir = Path(run_dir)
    if parts := run_parts(run_dir):
        each = [set(run_tasks(p)) for p in parts]
        return tuple(t for t in TASKS if all(t in s for s in each))
    try: heads = set(run_models(run_dir))
    except FastmaskError:
        raise EvaluateError(f'{run_dir}: not a run folder with models (no model files, folds or members)') from None
    return _derivable(heads | ({'age'} if _external_age(run_dir) else set()))


def per_task(probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    "Every task's probabilities: the 18 classes (class = mask*6 + gender*3 + age) marginalised, or task heads combined."
    out = dict(probs)
    if 'all' in probs:
        for t, p in split_tasks(probs['all']).items(): out.setdefault(t, p)
    elif (p18 := as_18class(probs)) is not None: out['all'] = p18
    return out


def run_probs(run_dir, paths, bs: int = 64, runtime: Runtime | None = None, tta: bool = False) -> dict[str, np.ndarray]:
    """Per-task probabilities of a run on image paths; folds and ensemble members are averaged as `predict_paths`
    does; `runtime`: default each run folder's own."""
    paths = list(map(str, paths))
    if parts := run_parts(run_dir):
        each = [run_probs(p, paths, bs, runtime, tta) for p in parts]
        return {t: soft_vote([e[t] for e in each]) for t in TASKS if all(t in e for e in each)}
    return per_task(task_probs(run_dir, paths, bs, runtime, tta))


def _layout_truth(src) -> pd.DataFrame:
    "Eval images with their truth (`eval/truth.csv`) as `path, ImageID, true_*` rows, in truth.csv order."
    root = Path(src.root)
    csv = root / 'eval' / 'truth.csv'
    if src.truth is None: raise EvaluateError(f'{csv}: not found; evaluate needs labelled images (eval truth or a labels .csv)')
    paths = [root / 'eval' / 'images' / i for i in src.truth['ImageID']]
    missing = [p for p in paths if not p.is_file()]
    if missing: raise EvaluateError(f'{missing[0]}: image listed in {csv} does not exist ({len(missing)} missing in all)')
    ans = src.truth['ans'].to_numpy()
    m, g, a = decode(ans)
    return pd.DataFrame({'path': [str(p) for p in paths], 'ImageID': src.truth['ImageID'].to_numpy(),
                         'true_all': ans, 'true_mask': m, 'true_gender': g, 'true_age': a})


def _csv_truth(src) -> pd.DataFrame:
    "Rows of a labels CSV as `path, [age], true_*` for the tasks every row is labelled for."
    df = src.train
    out = pd.DataFrame({'path': df['path'].to_numpy()})
    if 'age' in df.columns and df['age'].notna().any(): out['age'] = df['age'].to_numpy()
    for t, col in (('all', 'label'), ('mask', 'mask'), ('gender', 'gender'), ('age', 'age_group')):
        if t in src.tasks and col in df.columns: out[f'true_{t}'] = df[col].to_numpy().astype(int)
    return out


def data_name(src, data) -> str:
    "A data set's short name: a labels CSV's stem, a layout's folder name, or 'demo'."
    if src.kind == 'csv': return Path(src.root).stem
    return 'demo' if str(data) == 'demo' else Path(src.root).resolve().name


def labelled(data) -> tuple[pd.DataFrame, str]:
    "(labelled images as `path, true_{task}...` rows with groups at the standard cuts, data name) of a CSV or layout."
    src = open_data(data, DEFAULT_AGE_CUT)
    return (_csv_truth(src) if src.kind == 'csv' else _layout_truth(src)), data_name(src, data)


def _scores(df: pd.DataFrame, tasks) -> dict:
    "Macro F1, per-class F1 and support per task from `true_{task}` and `pred_{task}` columns."
    res = {}
    for t in tasks:
        y, p, names = df[f'true_{t}'].to_numpy(), df[f'pred_{t}'].to_numpy(), task_names(t)
        f1 = f1_score(y, p, labels=list(range(len(names))), average=None, zero_division=0)
        res[t] = dict(macro_f1=round(macro_f1(y, p), 4), class_f1={n: round(float(v), 4) for n, v in zip(names, f1)},
                      support={n: int(c) for n, c in zip(names, np.bincount(y, minlength=len(names)))})
    return res


def _figures(df: pd.DataFrame, tasks, title: str) -> dict:
    "The confusion matrix of each task and one per-class F1 figure (a panel per task), by file name."
    label = lambda t: '18 classes' if t == 'all' else t
    figs = {f'confusion_{t}.png': plot_confusion(df[f'true_{t}'], df[f'pred_{t}'], task_names(t),
                                                 f'{title}: {label(t)} (rows normalised)') for t in tasks}
    heights = [2.1 + .32 * len(task_names(t)) for t in tasks]
    fig = Figure(figsize=(8, sum(heights)), layout='constrained')
    subs = fig.subfigures(len(tasks), 1, height_ratios=heights) if len(tasks) > 1 else [fig]
    for sub, t in zip(subs, tasks):
        y, p = df[f'true_{t}'], df[f'pred_{t}']
        plot_class_f1(y, p, task_names(t), f'{title}: {label(t)}, macro F1 {macro_f1(y, p):.3f}', fig=sub)
    figs['class_f1.png'] = fig
    return figs


def evaluate(run_dir, data, out=None, bs: int = 64, runtime: Runtime | None = None, tta: bool = False) -> dict:
    "Score a run on a labels CSV or a layout's eval truth; write predictions, scores and plots into `out`."
    run_dir = Path(run_dir)
    if not run_dir.is_dir(): raise EvaluateError(f'{run_dir}: run folder does not exist')
    have = run_tasks(run_dir)
    truth, name = labelled(data)
    known = [t for t in TASKS if f'true_{t}' in truth.columns]
    tasks = [t for t in TASKS if t in have and t in known]
    if not tasks: raise EvaluateError(f"{run_dir}: no task in common with {data} (the run predicts {', '.join(have)}; "
                                      f"the labels give {', '.join(known) or 'none'})")
    probs = run_probs(run_dir, truth['path'], bs=bs, runtime=runtime, tta=tta)
    df = truth.assign(**{f'pred_{t}': probs[t].argmax(1) for t in tasks})
    df = df.assign(**{f'prob_{t}_{i}': probs[t][:, i] for t in tasks for i in range(probs[t].shape[1])})
    sc = _scores(df, tasks)
    res = dict(run=str(run_dir.resolve()), data=str(data), n_images=len(df), tta=tta, tasks=tasks,
               precision=resolve_precision(runtime or run_runtime(run_dir), default_device()),
               **{('f1' if t == 'all' else f'f1_{t}'): s['macro_f1'] for t, s in sc.items()}, scores=sc)
    figs = _figures(df, tasks, f'{run_dir.parent.name}/{run_dir.name} on {name}')  # everything computed before writing
    out = Path(out) if out is not None else RunDir(run_dir).evaluation(name)
    write_csv(out / 'predictions.csv', df)
    for f, fig in figs.items(): save_figure(fig, out / f)
    for t in TASKS:
        if t not in tasks: (out / f'confusion_{t}.png').unlink(missing_ok=True)  # stale from an earlier evaluation
    write_json(out / 'scores.json', res)
    return dict(res, out=str(out))
