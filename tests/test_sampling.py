"""Weighted sampler by class frequency and class-weighted loss."""
import numpy as np
import pytest
import torch
from fastai.callback.data import WeightedDL

from fastmask.errors import RecipeError
from fastmask.data.sampling import class_weighted_loss, class_weights, sample_weights


def test_sample_weights_draw_every_class_equally():
    y = np.array([0] * 70 + [1] * 25 + [2] * 5)
    w = sample_weights(y, 3)
    assert w.sum() == pytest.approx(1) and w[-1] / w[0] == pytest.approx(14)
    per_class = [w[y == c].sum() for c in range(3)]
    assert np.allclose(per_class, 1 / 3)


def test_class_weights_inverse_frequency():
    y = np.array([0] * 60 + [1] * 30 + [3] * 10)
    w = class_weights(y, 4)
    assert w.shape == (4,) and w[2] == 1                                     # absent class: neutral weight
    assert w[[0, 1, 3]].mean().item() == pytest.approx(1, rel=1e-5)
    assert (w[1] / w[0]).item() == pytest.approx(2) and (w[3] / w[0]).item() == pytest.approx(6)
    assert torch.equal(class_weighted_loss('ce', w).func.weight, w)
    with pytest.raises(RecipeError): class_weighted_loss('focal', w)


def test_weighted_recipe_options_on_a_learner(tiny_demo, tmp_path):
    from fastmask.data.block import BalancedMaskDL
    from fastmask.recipes.registry import override, resolve
    from fastmask.data.sampling import train_labels
    from fastmask.runners.train import build_learner, fit_task
    r = override(resolve('baseline_mobilenetv2', quick=True, size=32, epochs=1, bs=16, tasks=('all',)), age_cut=40,
                 sampler='weighted', class_weights=True)
    learn = build_learner(r, tiny_demo, 'all')
    assert isinstance(learn.dls.train, WeightedDL)
    y = train_labels(learn)
    assert len(y) == len(learn.dls.train_ds)
    np.random.seed(0)
    drawn = np.concatenate([y[learn.dls.train.get_idxs()] for _ in range(200)])
    share = np.bincount(drawn, minlength=18)[np.unique(y)] / len(drawn)
    assert np.abs(share - 1 / len(np.unique(y))).max() < 0.02             # classes drawn equally often
    w = learn.loss_func.func.weight if hasattr(learn.loss_func, 'func') else learn.loss_func.weight
    counts = np.bincount(y, minlength=18)
    rare, common = counts[counts > 0].argmin(), counts[counts > 0].argmax()
    present = np.flatnonzero(counts)
    assert w[present[rare]] > w[present[common]]
    fit_task(learn, tmp_path)
    assert (tmp_path / 'model_all.pth').exists()
    mask = build_learner(override(r, tasks=('mask',)), tiny_demo, 'mask')
    assert isinstance(mask.dls.train, BalancedMaskDL)                      # the balanced mask draw is kept
    with pytest.raises(RecipeError):
        build_learner(override(r, sampler='bogus'), tiny_demo, 'all')


def test_draw_people_gives_other_tasks_three_photos_a_person(tiny_demo):
    from fastmask.data.block import BalancedMaskDL
    from fastmask.recipes.registry import override, resolve
    from fastmask.runners.train import build_learner
    r = resolve('cpu_split_lite0', size=32, bs=16, pretrained=False)
    assert r.draw_people                                                    # the CPU recipe draws people
    plain = build_learner(override(r, draw_people=False), tiny_demo, 'gender')
    assert not isinstance(plain.dls.train, BalancedMaskDL)
    learn = build_learner(r, tiny_demo, 'gender')
    assert isinstance(learn.dls.train, BalancedMaskDL)
    items = learn.dls.train_ds.items.reset_index(drop=True)
    drawn = items.iloc[learn.dls.train.get_idxs()]
    people = items['person'].nunique()
    assert len(drawn) == 3 * people and drawn.groupby('person').size().eq(3).all()   # 3 of each person's 7
    assert drawn.groupby('person')['mask'].nunique().eq(3).all()                     # one of each mask state
    second = items.iloc[learn.dls.train.get_idxs()]
    assert set(drawn.index) != set(second.index)                                     # a new worn photo each epoch
