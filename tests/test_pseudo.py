"""Pseudo-labelling: confidence threshold, pseudo rows' labels, and eval images kept out of validation."""
import numpy as np
import pandas as pd
import pytest

from fastmask.errors import FastmaskError
from fastmask.runners.pseudo import pseudo_rows, select_pseudo, with_pseudo


def _eval(n=50, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(18, 0.3), n).astype(np.float32)
    df = pd.DataFrame({'ImageID': [f'e{i}.jpg' for i in range(n)], 'path': [f'/x/e{i}.jpg' for i in range(n)]})
    return df, probs


@pytest.mark.parametrize('thr', [0.3, 0.6, 0.9])
def test_threshold_is_respected(thr):
    df, probs = _eval()
    sel = select_pseudo(df, probs, thr)
    conf = probs.max(1)
    assert (sel['confidence'] >= thr).all()
    assert set(sel['ImageID']) == set(df['ImageID'][conf >= thr])            # nothing confident is dropped
    assert (sel['label'].to_numpy() == probs[conf >= thr].argmax(1)).all()
    with pytest.raises(FastmaskError): select_pseudo(df, probs, 0)


@pytest.mark.parametrize('cut', [31, 58, 60])
def test_pseudo_rows_keep_their_class_under_the_age_curve(cut):
    from fastmask.data.block import TaskLabel
    sel = pd.DataFrame({'ImageID': [f'e{c}' for c in range(18)], 'path': [f'/x/e{c}' for c in range(18)],
                        'label': np.arange(18)})
    rows = pseudo_rows(sel, cut)
    assert (TaskLabel('all', cut).labels(rows) == np.arange(18)).all()
    assert rows['person'].is_unique


def test_with_pseudo_adds_training_rows_only(tiny_demo):
    from fastmask.data.block import person_split
    from fastmask.sources.open import open_data
    src = open_data(tiny_demo)
    splits = person_split(src.train, 0.25, 1)
    df, probs = _eval(len(src.eval))
    sel = select_pseudo(src.eval, probs, 0.3)
    src2, (tr, va) = with_pseudo(src, sel, splits, 60)
    assert len(src2.train) == len(src.train) + len(sel)
    assert np.array_equal(va, splits[1])
    assert not set(src2.train['path'].iloc[va]) & set(src.eval['path'])
    assert set(src2.train['path'].iloc[tr]) >= set(sel['path'])


def test_pseudo_run_keeps_eval_out_of_validation(tiny_demo, tmp_path):
    from fastmask.io import read_json
    from fastmask.sources.open import open_data
    from fastmask.recipes.registry import override, resolve
    from fastmask.runners.run import run_recipe
    r = override(resolve('top_pseudo_effnet_b0', quick=True, size=32, epochs=1, bs=16, tasks=('all',)),
                 arch='mobilenetv2_100', pseudo_threshold=0.05)   # 0.05 < 1/18: keeps every image
    run = run_recipe(r, tiny_demo, tmp_path, num_workers=0)
    src = open_data(tiny_demo)
    s, base = read_json(run / 'summary.json'), read_json(run / 'base' / 'summary.json')
    assert s['n_pseudo'] == len(src.eval) and s['n_train'] == base['n_train'] + len(src.eval)
    assert s['n_valid'] == base['n_valid']
    valid = pd.read_csv(run / 'valid_preds.csv')['path']
    assert not set(valid) & set(src.eval['path'])
    assert set(valid) == set(pd.read_csv(run / 'base' / 'valid_preds.csv')['path'])
    sel = pd.read_csv(run / 'pseudo_labels.csv')
    assert (sel['confidence'] >= 0.05).all() and 'base_valid_f1' in s
    assert (run / 'submission.csv').exists() and (run / 'model_all.pth').exists()
