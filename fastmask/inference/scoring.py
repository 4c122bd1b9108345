"""One scorer of predictions against truth: macro F1 of the 18 classes and of each task."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from fastmask.errors import LayoutError
from fastmask.labels import MASKS, age_group, decode
from fastmask.sources.competition import read_truth

#: the mask state the report found hardest (worn with the nose or mouth uncovered)
INCORRECT = MASKS.index('incorrect')

__all__ = ['macro_f1', 'class_f1', 'scores', 'eval_truth', 'score_eval', 'score_files']


def macro_f1(y_true, y_pred) -> float:
    "scikit-learn's macro F1."
    return float(f1_score(y_true, y_pred, average='macro'))


def class_f1(y_true, y_pred, label: int) -> float:
    "scikit-learn's F1 of one class (0 where it is neither true nor predicted)."
    return float(f1_score(y_true, y_pred, labels=[label], average='macro', zero_division=0))


def scores(df: pd.DataFrame, prefix: str = 'valid_') -> dict[str, float]:
    """Macro F1 of 18 classes (`label`/`pred`) and of each task, as `{prefix}f1`, `{prefix}f1_mask`, ..., and the F1
    of the mask's hardest class, `incorrect`, as `{prefix}f1_incorrect`."""
    out = {}
    if 'pred' in df.columns and 'label' in df.columns:
        out['f1'] = macro_f1(df['label'], df['pred'])
        for t, a, b in zip(('mask', 'gender', 'age'), decode(df['label'].to_numpy()), decode(df['pred'].to_numpy())):
            out[f'f1_{t}'] = macro_f1(a, b)
            if t == 'mask': out['f1_incorrect'] = class_f1(a, b, INCORRECT)
    else:
        for t in ('mask', 'gender'):
            if f'pred_{t}' in df.columns: out[f'f1_{t}'] = macro_f1(df[t], df[f'pred_{t}'])
        if 'pred_mask' in df.columns: out['f1_incorrect'] = class_f1(df['mask'], df['pred_mask'], INCORRECT)
        if 'pred_age' in df.columns and 'age' in df.columns and df['age'].notna().all():   # true groups: cut 60
            out['f1_age'] = macro_f1(age_group(df['age'].to_numpy()), df['pred_age'])
    return {f'{prefix}{k}': round(v, 4) for k, v in out.items()}


def eval_truth(src) -> np.ndarray | None:
    "The 18-class truth of a data source's eval images in info.csv order, if it has `eval/truth.csv`."
    if src.eval is None or src.truth is None: return None
    return src.truth.set_index('ImageID').loc[src.eval['ImageID'], 'ans'].to_numpy()


def score_eval(src, probs: np.ndarray) -> dict[str, float]:
    "`eval_f1`, `eval_f1_mask`, ... of 18-class eval probabilities (empty when the data has no eval truth)."
    truth = eval_truth(src)
    if truth is None: return {}
    return scores(pd.DataFrame({'label': truth, 'pred': np.asarray(probs).argmax(1)}), prefix='eval_')


def score_files(submission, truth) -> dict[str, float]:
    "Scores of a submission CSV against a truth CSV (same ImageIDs, any order)."
    sub, tru = read_truth(submission), read_truth(truth)
    missing = set(tru['ImageID']) - set(sub['ImageID'])
    if missing: raise LayoutError(f'{submission}: {len(missing)} ImageID(s) of {truth} have no prediction, e.g. {sorted(missing)[0]}')
    merged = tru.merge(sub, on='ImageID', suffixes=('_true', '_pred'))
    return scores(pd.DataFrame({'label': merged['ans_true'], 'pred': merged['ans_pred']}), prefix='')
