"""Known label-noise fixes: the right people change, labels follow, others stay; the check reports them as notices."""
import pandas as pd

from fastmask.sources.labelfix import GENDER_FLIPPED, MASK_SWAPPED, apply_fixes, noise_reason, noisy_people
from fastmask.labels import encode
from fastmask.sources.competition import add_labels


def _people(ids, gender=0, age=35):
    rows = [(f'{p}/{s}.jpg', p, s, m, gender, age) for p in ids
            for s, m in [('mask1', 0), ('mask2', 0), ('incorrect_mask', 1), ('normal', 2)]]
    return add_labels(pd.DataFrame(rows, columns=['path', 'person', 'photo', 'mask', 'gender', 'age']))


def test_known_ids_from_the_docs():
    assert {'006359', '006364', '001498-1', '004432'} <= set(GENDER_FLIPPED) and len(GENDER_FLIPPED) == 8
    assert set(MASK_SWAPPED) == {'000020', '004418', '005227'}
    assert noise_reason('000001') is None and 'gender' in noise_reason('006361') and 'swapped' in noise_reason('004418')
    assert noisy_people(['000001', '004418', '006360']) == ['004418', '006360']


def test_apply_fixes_changes_only_noisy_people():
    df = _people(['000001', '006362', '000020'])
    fixed, changes = apply_fixes(df)
    assert [(c['person'], c['field']) for c in changes] == [('006362', 'gender'), ('000020', 'mask')]
    clean = fixed['person'] == '000001'
    pd.testing.assert_frame_equal(fixed[clean], df[clean])
    g = fixed[fixed['person'] == '006362']
    assert (g['gender'] == 1).all() and changes[0]['old'] == 'male' and changes[0]['new'] == 'female'
    m = fixed[fixed['person'] == '000020'].set_index('photo')['mask']
    assert m['incorrect_mask'] == 2 and m['normal'] == 1 and m['mask1'] == 0
    assert (fixed['label'] == encode(fixed['mask'], fixed['gender'], fixed['age_group'])).all()
    assert (df['gender'] == 0).all()  # the input is untouched


def test_no_noise_no_change():
    df = _people(['000001', '000002'])
    fixed, changes = apply_fixes(df)
    assert changes == [] and fixed.equals(df)
    assert apply_fixes(df.drop(columns=['person']))[1] == []
