"""Checks of what a finished run folder holds, shared by the tests that run recipes: the summary's scores recomputed
from the files the run wrote, the submission against the eval rows, every epoch of every task model trained.

Each check reads the run folder's files as a user or a later tool would (file names are the run folder's contract,
see `fastmask.rundir`) and fails when they disagree with each other or with the data's own labels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmask.inference.scoring import eval_truth, macro_f1

__all__ = ['summary', 'config', 'check_trained', 'check_valid_f1', 'check_submission']


def summary(run_dir) -> dict: return json.loads(Path(run_dir, 'summary.json').read_text())
def config(run_dir) -> dict: return json.loads(Path(run_dir, 'config.json').read_text())


def check_trained(run_dir, tasks) -> None:
    "A model file per task, and a metrics log whose every epoch trained (finite train and valid loss)."
    run_dir = Path(run_dir)
    for t in tasks:
        assert (run_dir / f'model_{t}.pth').is_file(), f'{run_dir}: no model_{t}.pth'
        m = pd.read_csv(run_dir / f'metrics_{t}.csv')
        m = m[m['epoch'].astype(str).str.isdigit()]                       # epochs (not repeated headers, `swa`)
        assert len(m), f'{run_dir}: metrics_{t}.csv logs no epoch'
        for col in ('train_loss', 'valid_loss'):                           # nan: no batch ran (e.g. bs > the data)
            assert np.isfinite(m[col].astype(float)).all(), f'{run_dir}: metrics_{t}.csv {col} {m[col].tolist()}'


def check_valid_f1(run_dir, src, key: str = 'valid_f1') -> float:
    """The summary's `key` is the macro F1 of valid_preds.csv's `pred` against the data's own labels of those
    photos, and `pred` is the argmax of valid_probs.npy (where the run has 18-class probabilities); returns it."""
    run_dir = Path(run_dir)
    vf = pd.read_csv(run_dir / 'valid_preds.csv')
    truth = src.train.assign(path=src.train['path'].astype(str)).set_index('path')['label']
    assert len(vf) and vf['label'].tolist() == truth.loc[vf['path'].astype(str)].tolist()
    if (run_dir / 'valid_probs.npy').is_file():
        p = np.load(run_dir / 'valid_probs.npy')
        assert p.shape == (len(vf), 18) and np.allclose(p.sum(1), 1, atol=1e-4)
        assert (vf['pred'].to_numpy() == p.argmax(1)).all()
    f1 = macro_f1(vf['label'], vf['pred'])
    assert summary(run_dir)[key] == pytest.approx(f1, abs=1e-4)
    return f1


def check_submission(run_dir, src, probs: np.ndarray | None = None) -> pd.DataFrame:
    """submission.csv: one row per eval image in info.csv order, classes 0..17, the argmax of `probs` (default: the
    run's eval_probs.npy where it saved one), and the summary's `eval_f1` is its F1 against the data's answers."""
    run_dir = Path(run_dir)
    sub = pd.read_csv(run_dir / 'submission.csv')
    assert len(sub) == len(src.eval)
    assert sub['ImageID'].astype(str).tolist() == src.eval['ImageID'].astype(str).tolist()
    assert sub['ans'].between(0, 17).all()
    if probs is None and (run_dir / 'eval_probs.npy').is_file(): probs = np.load(run_dir / 'eval_probs.npy')
    if probs is not None:
        assert probs.shape == (len(src.eval), 18) and (sub['ans'].to_numpy() == probs.argmax(1)).all()
    truth, s = eval_truth(src), summary(run_dir)
    if truth is not None and 'eval_f1' in s: assert s['eval_f1'] == pytest.approx(macro_f1(truth, sub['ans']), abs=1e-4)
    return sub
