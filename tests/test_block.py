"""Per-person splitter, balanced mask sampler, age-curve labeller and DataBlocks."""
import numpy as np
import pandas as pd
import pytest

from fastmask.data.block import BalancedMaskDL, TaskLabel, mask_groups, person_split, task_dls
from fastmask.labels import age_group


def people_frame(n=200, seed=0):
    "n synthetic people x 7 photos with the competition's label mix."
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n):
        g, age = int(rng.integers(2)), int(rng.choice([20, 25, 35, 45, 55, 60], p=[.25, .22, .2, .15, .1, .08]))
        for m in [0] * 5 + [1, 2]: rows.append(dict(path=f'{p}/{len(rows)}.jpg', person=f'{p:06d}', mask=m, gender=g, age=age))
    return pd.DataFrame(rows)


def test_split_no_leakage_ratio_and_seed():
    df = people_frame()
    tr, va = person_split(df)
    assert not set(df.person[tr]) & set(df.person[va])
    assert len(tr) + len(va) == len(df)
    assert df.person[va].nunique() == 30  # 15% of 200 people
    tr2, va2 = person_split(df)
    assert (va == va2).all()
    assert not np.array_equal(va, person_split(df, seed=1)[1])


def test_split_is_stratified_by_gender_and_age_group():
    df = people_frame(400, seed=3)
    _, va = person_split(df)
    per_person = df.groupby('person').first()
    strata = per_person.gender * 3 + age_group(per_person.age.to_numpy())
    valid_people = set(df.person[va])
    full = strata.value_counts(normalize=True)
    val = strata[strata.index.isin(valid_people)].value_counts(normalize=True)
    assert (full - val.reindex(full.index, fill_value=0)).abs().max() < 0.03


def test_balanced_sampler_draws_one_to_one_to_one():
    df = people_frame(20)
    groups = mask_groups(df)
    dl = BalancedMaskDL(list(range(len(df))), groups=groups, draw_seed=0, bs=8, shuffle=True)
    assert dl.n == 20 * 3
    seen, draws = set(), []
    for epoch in range(30):
        idxs = dl.get_idxs()
        assert len(idxs) == 60 and len(set(idxs)) == 60
        masks = df['mask'].to_numpy()[idxs]
        assert (np.bincount(masks, minlength=3) == 20).all()
        assert (df.person.to_numpy()[idxs].tolist().count('000000')) == 3
        seen |= set(i for i in idxs if df['mask'][i] == 0)
        draws.append(sorted(idxs))
    assert seen == set(np.flatnonzero(df['mask'] == 0))  # every mask photo drawn over epochs
    assert any(draws[0] != d for d in draws[1:])  # different draws per epoch


def test_validation_loader_keeps_all_photos(tiny_demo):
    from fastmask.sources.open import open_data
    df = open_data(tiny_demo).train
    dls = task_dls(df, 'mask', size=32, bs=8, num_workers=0)
    assert isinstance(dls.train, BalancedMaskDL) and dls.train.groups is not None
    n_train_people = df.iloc[person_split(df)[0]].person.nunique()
    assert dls.train.n == 3 * n_train_people
    assert len(dls.valid.dataset) == 7 * df.iloc[person_split(df)[1]].person.nunique()
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 3, 32, 32) and yb.max() < 3


@pytest.mark.parametrize('task,cut,expect', [('age', 60, 1), ('age', 57, 2), ('all', 57, 0 * 6 + 1 * 3 + 2),
                                             ('mask', 57, 0), ('gender', 60, 1)])
def test_task_label_age_curve(task, cut, expect):
    row = pd.Series(dict(mask=0, gender=1, age=58))
    assert TaskLabel(task, cut)(row) == expect
    assert TaskLabel(task, cut).labels(pd.DataFrame([row]))[0] == expect


def test_dls_labels_follow_age_curve(tiny_demo):
    from fastmask.sources.open import open_data
    df = open_data(tiny_demo).train
    dls = task_dls(df, 'age', size=32, bs=4, age_cut=57, num_workers=0)
    items = dls.valid.items
    got = [int(dls.valid.dataset[i][1]) for i in range(len(items))]
    assert got == age_group(items['age'].to_numpy(), 57).tolist()


@pytest.mark.parametrize('k', [1, 2])
def test_balanced_sampler_draws_k_photos_a_person(k):
    df = people_frame(20)
    dl = BalancedMaskDL(list(range(len(df))), groups=mask_groups(df), draw_seed=0, bs=8, shuffle=True, per_person=k)
    assert dl.n == 20 * k
    counts = np.zeros(3)
    for epoch in range(60):
        idxs = dl.get_idxs()
        assert len(idxs) == 20 * k and len(set(idxs)) == 20 * k
        assert (df.person.to_numpy()[idxs].tolist().count('000000')) == k
        counts += np.bincount(df['mask'].to_numpy()[idxs], minlength=3)
    assert counts.min() / counts.max() > 0.85            # the mask states still come about equally often
