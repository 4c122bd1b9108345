"""Any labelled CSV as training data: columns to tasks, groups, label parsing, one-line errors."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.sources.labelled import parse_age, parse_mask, read_labels_csv
from fastmask.data.block import TaskLabel, person_split
from fastmask.errors import LayoutError
from fastmask.labels import encode
from fastmask.sources.open import open_data


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n): Image.new('RGB', (40, 48), (10 * i % 255, 90, 160)).save(folder / f'f{i}.jpg')
    return [f'imgs/f{i}.jpg' for i in range(n)]


def _csv(tmp_path, **cols):
    n = len(next(iter(cols.values())))
    df = pd.DataFrame({'path': _images(tmp_path / 'imgs', n), **cols})
    p = tmp_path / 'labels.csv'
    df.to_csv(p, index=False)
    return p


def test_mask_only_csv_with_photo_groups(tmp_path):
    p = _csv(tmp_path, mask=['wear', 'incorrect', 'not_wear', 'with_mask', '2', 'without_mask'],
             photo=['a', 'a', 'b', 'c', 'c', 'd'])
    src = open_data(p)
    assert src.tasks == ('mask',)
    assert src.train['mask'].tolist() == [0, 1, 2, 0, 2, 2]
    assert src.train['person'].tolist() == ['a', 'a', 'b', 'c', 'c', 'd']
    assert all(p.startswith(str(tmp_path)) for p in src.train['path'])
    tr, va = person_split(src.train, 0.5, seed=0)
    groups = src.train['person']
    assert not set(groups.iloc[tr]) & set(groups.iloc[va])


def test_without_person_column_each_row_is_its_own_group(tmp_path):
    src = read_labels_csv(_csv(tmp_path, gender=['m', 'female', '0', 'F']))
    assert src.tasks == ('gender',)
    assert src.train['person'].nunique() == 4
    assert src.train['gender'].tolist() == [0, 1, 0, 1]


def test_all_three_give_18_class_labels_and_age_curve(tmp_path):
    src = read_labels_csv(_csv(tmp_path, mask=[0, 1, 2, 0], gender=[0, 1, 1, 0], age=[20, 58, 60, 45],
                               person=['x', 'x', 'y', 'z']), age_cut=57)
    assert src.tasks == ('all', 'mask', 'gender', 'age')
    assert src.train['age_group'].tolist() == [0, 2, 2, 1]
    assert src.train['label'].tolist() == list(encode([0, 1, 2, 0], [0, 1, 1, 0], [0, 2, 2, 1]))
    row = src.train.iloc[1]
    assert TaskLabel('age', 60)(row) == 1 and TaskLabel('age', 57)(row) == 2


def test_age_groups_without_years(tmp_path):
    src = read_labels_csv(_csv(tmp_path, age=['<30', '30-59', '>=60', '50-59']))
    assert src.tasks == ('age',)
    assert src.train['age'].isna().all()
    assert [TaskLabel('age', 57)(r) for _, r in src.train.iterrows()] == [0, 1, 2, 1]


@pytest.mark.parametrize('s, expect', [('wear', 0), ('mask3', 0), ('Incorrect', 1), ('no-mask', 2), ('normal', 2)])
def test_parse_mask(s, expect):
    assert parse_mask(s) == expect


def test_parse_age_refuses_bins_across_a_cut():
    assert parse_age('42') == (42.0, None)
    assert parse_age('more than 70')[1] == 2
    with pytest.raises(ValueError, match='straddles'): parse_age('25-34')


@pytest.mark.parametrize('cols, msg', [
    (dict(mask=['wear', 'maybe', 'wear']), r'row 3: .maybe. is not a mask state'),
    (dict(gender=['m', '', 'f']), 'row 3: empty gender'),
    (dict(age=['20', '200', '30']), 'row 3: age 200 out of range'),
    (dict(race=['a', 'b', 'c']), 'no label column'),
])
def test_bad_rows_are_one_line_errors(tmp_path, cols, msg):
    with pytest.raises(LayoutError, match=msg) as e: read_labels_csv(_csv(tmp_path, **cols))
    assert 'labels.csv' in str(e.value) and '\n' not in str(e.value)


def test_missing_images_and_columns(tmp_path):
    p = _csv(tmp_path, mask=['wear', 'wear', 'normal'])
    (tmp_path / 'imgs' / 'f1.jpg').unlink()
    with pytest.raises(LayoutError, match=r'row 3: image .*f1.jpg does not exist \(1 of 3 missing\)'): read_labels_csv(p)
    q = tmp_path / 'nopath.csv'
    q.write_text('file,mask\na.jpg,wear\n')
    with pytest.raises(LayoutError, match="needs a 'path' column"): read_labels_csv(q)
    with pytest.raises(LayoutError, match='file not found'): read_labels_csv(tmp_path / 'absent.csv')


def test_split_recipe_trains_only_the_mask_model(tmp_path):
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    p = _csv(tmp_path, mask=['wear', 'incorrect', 'not_wear'] * 4, photo=[f'p{i // 2}' for i in range(12)])
    r = resolve('split_mobilenetv2', quick=True, size=32, epochs=1, bs=4, valid_pct=0.34)
    run = run_recipe(r, p, tmp_path / 'runs', num_workers=0)
    assert sorted(f.name for f in run.glob('model_*.pth')) == ['model_mask.pth']
    vp = pd.read_csv(run / 'valid_preds.csv')
    assert 'pred_mask' in vp and 'pred' not in vp and np.isin(vp['pred_mask'], [0, 1, 2]).all()
