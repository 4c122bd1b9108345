"""Combining task heads, soft voting and scoring."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from fastmask.labels import encode
from fastmask.inference.predict import combine_tasks, soft_vote, write_submission
from fastmask.inference.scoring import score_files, scores


def softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_combined_probabilities_are_the_outer_product_and_argmax_agrees():
    rng = np.random.default_rng(0)
    pm, pg, pa = (softmax(rng.normal(size=(500, k)) * 3) for k in (3, 2, 3))
    p = combine_tasks(pm, pg, pa)
    assert p.shape == (500, 18) and np.allclose(p.sum(1), 1)
    assert np.isclose(p[7, encode(2, 1, 0)], pm[7, 2] * pg[7, 1] * pa[7, 0])
    assert (p.argmax(1) == encode(pm.argmax(1), pg.argmax(1), pa.argmax(1))).all()


def test_soft_vote_is_the_mean_and_checks_shapes():
    a, b = np.full((4, 18), 1 / 18), np.eye(18)[[0, 1, 2, 3]]
    assert np.allclose(soft_vote([a, b]), (a + b) / 2)
    with pytest.raises(ValueError):
        soft_vote([a, np.ones((3, 18))])


def test_scores_per_task_from_18_classes():
    label = np.array([encode(0, 0, 0), encode(1, 1, 2), encode(2, 0, 1), encode(0, 1, 1)])
    pred = np.array([encode(0, 0, 1), encode(1, 1, 2), encode(2, 1, 1), encode(0, 1, 1)])
    s = scores(pd.DataFrame({'label': label, 'pred': pred}))
    assert s['valid_f1_mask'] == 1.0
    assert s['valid_f1_gender'] < 1.0 and s['valid_f1_age'] < 1.0 and s['valid_f1'] < 1.0


def test_submission_and_score_files(tmp_path):
    ev = pd.DataFrame({'ImageID': ['b.jpg', 'a.jpg', 'c.jpg']})
    probs = np.eye(18)[[5, 17, 0]]
    write_submission(tmp_path / 'sub.csv', ev, probs)
    sub = pd.read_csv(tmp_path / 'sub.csv')
    assert sub['ImageID'].tolist() == ['b.jpg', 'a.jpg', 'c.jpg'] and sub['ans'].tolist() == [5, 17, 0]
    pd.DataFrame({'ImageID': ['a.jpg', 'b.jpg', 'c.jpg'], 'ans': [17, 5, 1]}).to_csv(tmp_path / 't.csv', index=False)
    s = score_files(tmp_path / 'sub.csv', tmp_path / 't.csv')
    assert s['f1_gender'] == 1.0 and s['f1'] < 1.0


def test_age_of_task_models_is_scored_on_true_groups():
    "A gender + age run (e.g. a face CSV) scores its age head against the ages' true groups (>= 60 from 60)."
    df = pd.DataFrame({'gender': [0, 1, 0, 1], 'pred_gender': [0, 1, 1, 1], 'age': [25, 45, 59, 60],
                       'pred_age': [0, 1, 2, 2]})
    s = scores(df)
    assert s['valid_f1_gender'] == round(f1_score([0, 1, 0, 1], [0, 1, 1, 1], average='macro'), 4)
    assert s['valid_f1_age'] == round(f1_score([0, 1, 1, 2], [0, 1, 2, 2], average='macro'), 4)


def test_incorrect_class_f1_from_task_models_and_18_classes():
    "The mask's `incorrect` class gets its own F1, from a mask model's predictions or from 18-class ones."
    mask, pred = [0, 1, 1, 2, 1, 0], [0, 1, 0, 2, 2, 1]
    want = round(f1_score(mask, pred, labels=[1], average='macro'), 4)
    assert want == 0.4 and scores(pd.DataFrame({'mask': mask, 'pred_mask': pred}))['valid_f1_incorrect'] == want
    label, pred18 = [m * 6 for m in mask], [m * 6 + 3 for m in pred]       # gender and age do not change it
    assert scores(pd.DataFrame({'label': label, 'pred': pred18}), prefix='eval_')['eval_f1_incorrect'] == want
    assert 'valid_f1_incorrect' not in scores(pd.DataFrame({'gender': [0, 1], 'pred_gender': [0, 1]}))
