"""Property tests: the folder-name, file-name and CSV parsers never crash with anything but LabelError / LayoutError."""
import pytest

hypothesis = pytest.importorskip('hypothesis', reason='property tests need hypothesis (pip install fastmask[dev])')
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from fastmask.errors import FastmaskError, LayoutError  # noqa: E402
from fastmask.labels import GENDERS, LabelError, mask_from_name, parse_person_folder, person_folder_name  # noqa: E402

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ids = st.from_regex(r'\A[0-9]{6}(-[0-9])?\Z')
genders = st.sampled_from(['male', 'female', 'Male', 'FEMALE'])
races = st.from_regex(r'\A[A-Za-z]{1,10}\Z')
stems = st.sampled_from(['mask1', 'mask2', 'mask3', 'mask4', 'mask5', 'incorrect_mask', 'normal'])
exts = st.sampled_from(['.jpg', '.jpeg', '.png', '.JPG', '.Jpeg'])


@SETTINGS
@given(st.text(max_size=40))
def test_folder_parser_total(name):
    try: p = parse_person_folder(name)
    except LabelError as e: assert str(e)  # odd characters are echoed; the CLI prints them escaped on one line
    else:
        assert 0 < p.age < 120 and p.gender in (0, 1)
        assert parse_person_folder(person_folder_name(p.id, p.gender, p.race, p.age)) == p


@SETTINGS
@given(ids, genders, races, st.integers(1, 119))
def test_folder_parser_roundtrip(pid, gender, race, age):
    p = parse_person_folder(f'{pid}_{gender}_{race}_{age}')
    assert (p.id, GENDERS[p.gender], p.race, p.age) == (pid, gender.lower(), race, age)


@SETTINGS
@given(ids, st.sampled_from(['robot', 'x', 'M4le']), races, st.integers(0, 999))
def test_folder_parser_rejects(pid, gender, race, age):
    with pytest.raises(LabelError): parse_person_folder(f'{pid}_{gender}_{race}_{age}')
    if not 0 < age < 120:
        with pytest.raises(LabelError): parse_person_folder(f'{pid}_male_{race}_{age}')


@SETTINGS
@given(st.text(max_size=30))
def test_mask_name_parser_total(name):
    try: m = mask_from_name(name)
    except LabelError: pass
    else: assert m in (0, 1, 2)


@SETTINGS
@given(stems, exts, st.booleans())
def test_mask_name_parser_accepts_and_rejects(stem, ext, hidden):
    name = ('._' if hidden else '') + stem + ext
    if hidden:
        with pytest.raises(LabelError): mask_from_name(name)
    else: assert mask_from_name(name) == (0 if stem.startswith('mask') else 1 if stem == 'incorrect_mask' else 2)
    with pytest.raises(LabelError): mask_from_name(stem + '.gif')


csv_text = st.one_of(st.text(max_size=200),
                     st.lists(st.lists(st.one_of(st.text(max_size=8), st.integers(-5, 30).map(str)), min_size=1, max_size=4),
                              max_size=6).map(lambda rows: 'ImageID,ans\n' + '\n'.join(','.join(r) for r in rows)),
                     st.binary(max_size=100).map(lambda b: b.decode('latin-1')))


@SETTINGS
@given(csv_text)
def test_truth_reader_total(tmp_path, text):
    from fastmask.sources.competition import read_truth
    f = tmp_path / 'truth.csv'
    f.write_text(text, encoding='utf-8')
    try: df = read_truth(f)
    except LayoutError as e: assert str(f) in str(e)
    else: assert list(df.columns) == ['ImageID', 'ans'] and df['ans'].between(0, 17).all()


labels_text = st.lists(st.tuples(st.sampled_from(['a.jpg', 'missing.jpg', '', '../x.png']),
                                 st.sampled_from(['wear', 'incorrect', '2', 'bogus', '']),
                                 st.sampled_from(['male', 'f', 'robot', '']),
                                 st.sampled_from(['30', '<30', '50-59', '20-40', '150', 'old?', ''])), max_size=5) \
    .map(lambda rows: 'path,mask,gender,age\n' + '\n'.join(','.join(r) for r in rows))


@SETTINGS
@given(st.one_of(labels_text, st.text(max_size=120)))
def test_labels_csv_reader_and_check_total(tmp_path, text):
    from PIL import Image
    from fastmask.sources.check import check_data
    from fastmask.sources.labelled import read_labels_csv
    if not (tmp_path / 'a.jpg').exists(): Image.new('RGB', (8, 8)).save(tmp_path / 'a.jpg')
    f = tmp_path / 'labels.csv'
    f.write_text(text, encoding='utf-8')
    try: src = read_labels_csv(f)
    except FastmaskError as e: assert str(e)
    else: assert len(src.train) and src.train['path'].map(lambda p: p.endswith('.jpg') or p.endswith('.png')).all()
    r = check_data(f, cache=False)  # collects problems, never raises on row content
    assert all(p.reason for p in r.problems)
