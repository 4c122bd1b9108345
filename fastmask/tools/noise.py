"""`fastmask data noise`: likely mislabelled photos and people, from out-of-fold probabilities and cleanlab.

A recipe is trained k-fold by person (or a finished k-fold run folder is read), so every training photo is predicted
by a model that never saw its person. Per task, cleanlab's confident learning (`cleanlab.filter.find_label_issues`)
flags likely label errors and `cleanlab.rank.get_label_quality_scores` (self-confidence: the probability of the
given label) ranks them. Gender and age belong to a person: a person's photos' probabilities are averaged and
people are ranked. The mask state belongs to a photo (an `incorrect_mask`/`normal` swap shows as two photos).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.io import atomic_dir, read_json, write_csv, write_json
from fastmask.inference.predict import split_tasks
from fastmask.labels import DEFAULT_AGE_CUT, age_group, decode, task_names
from fastmask.plots import save_figure
from fastmask.recipes import Recipe, resolve
from fastmask.runners.kfold import DEFAULT_FOLDS, as_kfold, fold_dirs
from fastmask.rundir import RunDir
from fastmask.runners.run import new_run_dir, run_recipe
from fastmask.runspec import RunSpec

__all__ = ['NOISE_TASKS', 'PERSON_TASKS', 'ISSUE_COLUMNS', 'fold_probs', 'given_labels', 'oof_probs',
           'task_table', 'find_issues', 'relabel_template', 'plot_suspects', 'noise_report', 'find_noise']

NOISE_TASKS = ('mask', 'gender', 'age')
PERSON_TASKS = ('gender', 'age')
ISSUE_COLUMNS = ['rank', 'task', 'person', 'path', 'given', 'suggested', 'score', 'issue']


def _cleanlab():
    "cleanlab's `find_label_issues` and `get_label_quality_scores`, or a one-line MissingExtraError."
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError: raise MissingExtraError('cleanlab', 'noise', 'fastmask data noise') from None
    return find_label_issues, get_label_quality_scores


def fold_probs(fold_dir) -> dict[str, np.ndarray]:
    "Per-task validation probabilities of a run folder: `valid_probs_{task}.npy`, else its 18-class ones marginalised."
    d = RunDir(fold_dir)
    out = {t: np.load(d.task_probs(t)) for t in NOISE_TASKS if d.task_probs(t).is_file()}
    p18 = next((f for f in (d.task_probs('all'), d.valid_probs) if f.is_file()), None)
    if p18 is not None:
        for t, p in split_tasks(np.load(p18)).items(): out.setdefault(t, p)
    return out


def given_labels(vp: pd.DataFrame, age_cut: int = DEFAULT_AGE_CUT) -> pd.DataFrame:
    "valid_preds.csv rows plus `given_{task}`: the labels the models learnt (age groups at the recipe's age cut)."
    out = vp.copy()
    for t in ('mask', 'gender'):
        if t in vp.columns: out[f'given_{t}'] = vp[t]
    age = pd.to_numeric(vp['age'], errors='coerce') if 'age' in vp.columns else pd.Series(np.nan, index=vp.index)
    grp, known = pd.Series(np.nan, index=vp.index), age.notna()
    if known.any(): grp[known] = age_group(age[known].to_numpy(), age_cut)
    if 'label' in vp.columns and (~known).any(): grp[~known] = decode(vp.loc[~known, 'label'].to_numpy().astype(int))[2]
    if 'age' in vp.columns or 'label' in vp.columns: out['given_age'] = grp
    return out


def oof_probs(run_dir) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    "Every training photo of a k-fold run (its folds' valid_preds.csv with given labels) and per-task OOF probabilities."
    run_dir = Path(run_dir)
    if not run_dir.is_dir(): raise FastmaskError(f'{run_dir}: run folder does not exist')
    folds = fold_dirs(run_dir)
    if not folds: raise FastmaskError(f"{run_dir}: not a k-fold run folder (no fold*/ with models); train one with "
                                      f"'fastmask recipe NAME --folds K' or run 'fastmask data noise --data DIR --recipe NAME'")
    rd = RunDir(run_dir)
    try: recipe = Recipe.from_dict(rd.read_config()['recipe'])
    except (OSError, ValueError, KeyError, TypeError) as e: raise FastmaskError(f'{rd.config}: unreadable run config ({e})') from None
    frames, per = [], []
    for d in map(RunDir, folds):
        if not d.valid_preds.is_file(): raise FastmaskError(f'{d.path}: unfinished fold (no {d.VALID_PREDS})')
        vp, ps = pd.read_csv(d.valid_preds, dtype={'person': str, 'path': str}), fold_probs(d.path)
        for t, p in ps.items():
            if len(p) != len(vp): raise FastmaskError(f'{d.path}: {t} probabilities have {len(p)} rows, {d.VALID_PREDS} {len(vp)}')
        cut = recipe.for_task('age' if d.task_probs('age').is_file() else 'all').age_cut
        frames.append(given_labels(vp, cut))
        per.append(ps)
    frame = pd.concat(frames, ignore_index=True)
    probs = {t: np.concatenate([ps[t] for ps in per]).astype(np.float64) for t in NOISE_TASKS
             if all(t in ps for ps in per) and f'given_{t}' in frame.columns and frame[f'given_{t}'].notna().all()}
    if not probs: raise FastmaskError(f'{run_dir}: no task has both probabilities (valid_probs*.npy) and labels in every fold')
    return frame, probs


def task_table(frame: pd.DataFrame, probs: np.ndarray, task: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    "(rows with person and path, given labels, probabilities) of a task: one row per person where labels are a person's."
    given = frame[f'given_{task}'].to_numpy().astype(int)
    if task in PERSON_TASKS and 'person' in frame.columns:
        keys = frame['person'].astype(str).to_numpy()
        if (pd.Series(given).groupby(keys).nunique() == 1).all():   # every photo of a person has the same label
            codes, people = pd.factorize(keys)
            p = np.zeros((len(people), probs.shape[1]))
            np.add.at(p, codes, probs)
            g = np.zeros(len(people), int)
            g[codes] = given
            return pd.DataFrame({'person': people, 'path': ''}), g, p / np.bincount(codes)[:, None]
    person = frame['person'].astype(str).to_numpy() if 'person' in frame.columns else ''
    return pd.DataFrame({'person': person, 'path': frame['path'].to_numpy()}), given, probs


def find_issues(frame: pd.DataFrame, probs: dict[str, np.ndarray]) -> pd.DataFrame:
    "cleanlab on every task, one table (`ISSUE_COLUMNS`): likely label errors first, each part by score, lowest first."
    find_label_issues, quality = _cleanlab()
    parts = []
    for task, p in probs.items():
        rows, given, tp = task_table(frame, p, task)
        tp = tp / tp.sum(1, keepdims=True)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # cleanlab warns about classes with few examples
            issue = find_label_issues(given, tp, n_jobs=1)
            score = quality(given, tp)
        names = task_names(task)
        parts.append(rows.assign(task=task, given=[names[i] for i in given], suggested=[names[i] for i in tp.argmax(1)],
                                 score=score, issue=issue))
    t = pd.concat(parts, ignore_index=True).sort_values(['issue', 'score'], ascending=[False, True], kind='stable')
    return t.assign(rank=np.arange(1, len(t) + 1))[ISSUE_COLUMNS].reset_index(drop=True)


def relabel_template(table: pd.DataFrame) -> pd.DataFrame:
    "The likely label errors with an empty `label` column to fill in: the file `fastmask recipe --relabel` reads."
    cols = ['task', 'person', 'path', 'given', 'suggested', 'score']
    return table.loc[table['issue'], cols].assign(label='').reset_index(drop=True)


def _person_photo(frame: pd.DataFrame) -> dict:
    "One photo per person to show: the `normal` (unmasked) one where there is one."
    if 'person' not in frame.columns: return {}
    not_normal = frame['path'].map(lambda p: Path(p).stem.lower() != 'normal')
    first = frame.assign(_k=not_normal).sort_values('_k', kind='stable').drop_duplicates('person')
    return dict(zip(first['person'].astype(str), first['path']))


def plot_suspects(table: pd.DataFrame, frame: pd.DataFrame, k: int = 16, ncols: int = 4) -> Figure:
    "The top `k` rows of `find_issues`: a photo each (a person's `normal` photo for gender and age), given -> suggested."
    from PIL import Image
    rows, photo = table.head(k), _person_photo(frame)
    nrows = -(-max(len(rows), 1) // ncols)
    fig = Figure(figsize=(2.7 * ncols, 3.9 * nrows))
    axs = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax in axs: ax.axis('off')
    for ax, r in zip(axs, rows.itertuples(index=False)):
        path = r.path or photo.get(str(r.person))
        try:
            with Image.open(path) as im:
                im.thumbnail((256, 256))
                ax.imshow(im.convert('RGB'))
        except (OSError, TypeError, ValueError, AttributeError):
            ax.text(.5, .5, 'image not found', ha='center', va='center', transform=ax.transAxes)
        who = f'person {r.person}' if not r.path else f'{Path(r.path).parent.name[:30]}\n{Path(r.path).name[:30]}'
        ax.set_title(f'#{r.rank} {r.task}: {r.given} -> {r.suggested}\n{who}\nscore {r.score:.3f}'
                     f"{'  (likely error)' if r.issue else ''}", fontsize=8, color='#c44e52' if r.issue else 'black')
    if rows.empty: axs[0].text(.5, .5, 'no rows', ha='center', va='center', transform=axs[0].transAxes)
    fig.suptitle('likely label errors: given -> suggested label (score: out-of-fold probability of the given label)')
    return fig


def noise_report(run_dir, out=None, top: int = 16) -> Path:
    "Likely label errors of a finished k-fold run: `label_issues.csv`, `suspects.png`, `relabel.csv` and `noise.json` in `out`."
    run_dir = Path(run_dir).resolve()
    frame, probs = oof_probs(run_dir)
    table = find_issues(frame, probs)
    if out is None:
        out = new_run_dir(run_dir.parent.parent / 'noise', run_dir.parent.name)   # runs/noise/<recipe>/<timestamp>
    issues = table[table['issue']]
    with atomic_dir(out, 'noise output folder') as tmp:                       # all files appear together or none
        write_csv(tmp / 'label_issues.csv', table)
        save_figure(plot_suspects(table, frame, top), tmp / 'suspects.png')
        write_csv(tmp / 'relabel.csv', relabel_template(table))
        write_json(tmp / 'noise.json', dict(run=str(run_dir), tasks=list(probs), rows=len(table),
                                            person_tasks=sorted(set(table.loc[table['path'] == '', 'task'])),
                                            issues={t: int((issues['task'] == t).sum()) for t in probs}))
    return Path(out)


def find_noise(spec: RunSpec, folds: int | None = None, out=None, top: int = 16) -> Path:
    "Train the spec's recipe k-fold by person (a normal k-fold run under the spec's `out`), then `noise_report` it into `out`."
    _cleanlab()                                                                # a missing extra fails before training
    run_dir = run_recipe(spec.with_recipe(as_kfold(spec.recipe, folds or DEFAULT_FOLDS)))
    return noise_report(run_dir, out, top)
