"""Predict from a run folder: task models combined into 18 classes, soft voting, submissions and scores."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score

from .errors import FastmaskError, LayoutError
from .io import write_csv
from .labels import N_CLASSES, decode

__all__ = ['combine_tasks', 'load_task_model', 'run_models', 'predict_paths', 'soft_vote', 'write_submission',
           'scores', 'score_files', 'macro_f1']


def combine_tasks(p_mask, p_gender, p_age) -> np.ndarray:
    "18-class probabilities as the outer product of the mask, gender and age heads' probabilities."
    p = np.einsum('nm,ng,na->nmga', np.asarray(p_mask), np.asarray(p_gender), np.asarray(p_age))
    return p.reshape(len(p), N_CLASSES)


def soft_vote(probs: list[np.ndarray]) -> np.ndarray:
    "Unweighted mean of members' 18-class probabilities."
    if not probs: raise ValueError('soft voting needs at least one member')
    shapes = {p.shape for p in probs}
    if len(shapes) != 1: raise ValueError(f'members disagree on shape: {sorted(shapes)}')
    return np.mean(np.stack(probs), 0)


def run_models(run_dir) -> dict[str, Path]:
    "The task model files of a run folder, by task."
    run_dir = Path(run_dir)
    models = {p.stem[len('model_'):]: p for p in sorted(run_dir.glob('model_*.pth'))}
    if not models: raise FastmaskError(f'{run_dir}: no model_*.pth files (not a finished run folder?)')
    return models


def load_task_model(path):
    "A task model and its metadata from a `model_{task}.pth` file."
    from .models import create_model
    ck = torch.load(path, map_location='cpu', weights_only=False)
    model = create_model(ck['arch'], ck['n_out'], pretrained=False)
    model.load_state_dict(ck['state_dict'])
    return model.eval(), ck


@torch.no_grad()
def _task_probs(model, meta, paths, bs, num_workers, tta: bool = False) -> np.ndarray:
    "Softmax probabilities of one task model over image paths (validation transforms)."
    from fastai.torch_core import default_device
    from .data import infer_dl
    from .accel import autocast_ctx, inference_model
    dev = default_device()
    model = inference_model(model, dev)  # channels-last / compile per accel settings
    out = []
    from .progress import progress
    dl = infer_dl(paths, meta['size'], meta['crop'], bs=bs, num_workers=num_workers, device=dev)
    for (xb,) in progress(dl, len(dl), f"predict {meta.get('task', '')}"):  # a bar in a terminal only
        with autocast_ctx(dev):
            p = model(xb).float().softmax(-1)
            if tta: p = (p + model(xb.flip(-1)).float().softmax(-1)) / 2
        out.append(p.cpu())
    return torch.cat(out).numpy()


def predict_paths(run_dir, paths, bs: int = 64, num_workers: int | None = None, tta: bool = False) -> np.ndarray:
    "18-class probabilities of a finished run on image paths."
    paths = list(map(str, paths))
    from .kfold import fold_dirs  # a k-fold run folder: soft vote of its fold models
    if not any(Path(run_dir).glob('model_*.pth')) and (folds := fold_dirs(run_dir)):
        return soft_vote([predict_paths(d, paths, bs, num_workers, tta) for d in folds])
    models = run_models(run_dir)
    from .facecrop import run_preprocess  # face-crop runs see cached crops
    from .agemodel import external_heads  # external-age runs take the age head from a packaged estimator
    seen = run_preprocess(run_dir, paths)
    probs = {t: _task_probs(*load_task_model(p), seen, bs, num_workers, tta) for t, p in models.items()}
    probs.update(external_heads(run_dir, paths, probs))
    if 'all' in probs: return probs['all']
    if all(t in probs for t in ('mask', 'gender', 'age')): return combine_tasks(probs['mask'], probs['gender'], probs['age'])
    raise FastmaskError(f"{run_dir}: has models for {', '.join(probs)} only; 18-class predictions need all three tasks")


def write_submission(path, eval_df: pd.DataFrame, probs: np.ndarray) -> Path:
    "Write `ImageID,ans` in info.csv order."
    if len(eval_df) != len(probs): raise ValueError(f'{len(probs)} predictions for {len(eval_df)} eval images')
    return write_csv(path, pd.DataFrame({'ImageID': eval_df['ImageID'].to_numpy(), 'ans': np.asarray(probs).argmax(1)}))


def macro_f1(y_true, y_pred) -> float:
    "scikit-learn's macro F1."
    return float(f1_score(y_true, y_pred, average='macro'))


def scores(df: pd.DataFrame) -> dict[str, float]:
    "Macro F1 of 18 classes (`label`/`pred`) and of each task, as `valid_f1`, `valid_f1_mask`, ..."
    out = {}
    if 'pred' in df.columns and 'label' in df.columns:
        out['valid_f1'] = macro_f1(df['label'], df['pred'])
        for t, a, b in zip(('mask', 'gender', 'age'), decode(df['label'].to_numpy()), decode(df['pred'].to_numpy())):
            out[f'valid_f1_{t}'] = macro_f1(a, b)
    else:
        for t in ('mask', 'gender'):
            if f'pred_{t}' in df.columns: out[f'valid_f1_{t}'] = macro_f1(df[t], df[f'pred_{t}'])
    return {k: round(v, 4) for k, v in out.items()}


def score_files(submission, truth) -> dict[str, float]:
    "Scores of a submission CSV against a truth CSV (same ImageIDs, any order)."
    from .layout import read_truth
    sub, tru = read_truth(submission), read_truth(truth)
    missing = set(tru['ImageID']) - set(sub['ImageID'])
    if missing: raise LayoutError(f'{submission}: {len(missing)} ImageID(s) of {truth} have no prediction, e.g. {sorted(missing)[0]}')
    merged = tru.merge(sub, on='ImageID', suffixes=('_true', '_pred'))
    res = scores(pd.DataFrame({'label': merged['ans_true'], 'pred': merged['ans_pred']}))
    return {k.replace('valid_', ''): v for k, v in res.items()}
