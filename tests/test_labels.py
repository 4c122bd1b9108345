"""Class encoding, name parsing and the age curve."""
import numpy as np
import pytest

from fastmask.labels import (N_CLASSES, LabelError, age_group, class_names, decode, encode, mask_from_name,
                             mask_from_stem, parse_person_folder, person_folder_name)


def test_encode_decode_round_trip_all_classes():
    for c in range(N_CLASSES):
        m, g, a = decode(c)
        assert encode(m, g, a) == c
        assert 0 <= m < 3 and 0 <= g < 2 and 0 <= a < 3
    cs = np.arange(N_CLASSES)
    assert (encode(*decode(cs)) == cs).all()


def test_class_formula_matches_competition():
    assert encode(0, 0, 0) == 0 and encode(1, 0, 0) == 6 and encode(0, 1, 0) == 3 and encode(2, 1, 2) == 17
    assert class_names()[encode(1, 1, 2)] == 'incorrect/female/>=60'


@pytest.mark.parametrize('stem,mask', [('mask1', 0), ('mask5', 0), ('incorrect_mask', 1), ('normal', 2), ('Normal', 2)])
def test_mask_from_stem(stem, mask):
    assert mask_from_stem(stem) == mask


@pytest.mark.parametrize('name,mask', [('mask3.jpeg', 0), ('incorrect_mask.PNG', 1), ('normal.jpg', 2)])
def test_mask_from_name_any_extension(name, mask):
    assert mask_from_name(name) == mask


@pytest.mark.parametrize('name', ['._mask1.jpg', 'mask6.jpg', 'mask1.gif', 'normal', 'masked.jpg'])
def test_mask_from_name_rejects(name):
    with pytest.raises(LabelError):
        mask_from_name(name)


def test_age_curve_default_and_report_cut():
    ages = np.array([18, 29, 30, 56, 57, 59, 60])
    assert age_group(ages).tolist() == [0, 0, 1, 1, 1, 1, 2]
    assert age_group(ages, 57).tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert age_group(58, 58) == 2 and age_group(57, 58) == 1
    with pytest.raises(ValueError):
        age_group(40, 20)


def test_person_folder_parse_and_format():
    p = parse_person_folder('006359_female_Asian_19')
    assert (p.id, p.gender, p.race, p.age) == ('006359', 1, 'Asian', 19)
    assert person_folder_name(p.id, p.gender, p.race, p.age) == '006359_female_Asian_19'
    assert parse_person_folder('001498-1_male_Asian_23').id == '001498-1'


@pytest.mark.parametrize('bad', ['000001_female_Asian', '000001_robot_Asian_20', '000001_male_Asian_abc',
                                 '000001_male_Asian_0', 'garbage', ''])
def test_person_folder_rejects(bad):
    with pytest.raises(LabelError):
        parse_person_folder(bad)
