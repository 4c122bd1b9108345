"""Tests of the procedural demo data set."""
import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmask import labels
from fastmask.io import cache_root
from fastmask.sources.demo import PHOTO_STEMS, demo_dir, make_demo, person_attrs


def _rows(p: Path) -> list[dict]:
    with open(p, newline='') as f: return list(csv.DictReader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp('d') / 'demo', persons=6, eval_persons=2, seed=3)


def test_layout(demo):
    rows = _rows(demo / 'train' / 'train.csv')
    assert list(rows[0]) == ['id', 'gender', 'race', 'age', 'path'] and len(rows) == 6
    folders = sorted(p.name for p in (demo / 'train' / 'images').iterdir())
    assert sorted(r['path'] for r in rows) == folders
    for i, r in enumerate(rows):
        assert r['id'] == f'{i + 1:06d}' and r['race'] == 'Asian' and r['gender'] in ('male', 'female')
        p = labels.parse_person_folder(r['path'])
        assert (p.id, labels.GENDERS[p.gender], p.age) == (r['id'], r['gender'], int(r['age'])) and 18 <= p.age <= 60
        names = sorted(f.name for f in (demo / 'train' / 'images' / r['path']).iterdir())
        assert names == sorted(f'{s}.jpg' for s in PHOTO_STEMS)
    info, truth = _rows(demo / 'eval' / 'info.csv'), _rows(demo / 'eval' / 'truth.csv')
    assert len(info) == len(truth) == 14 and [r['ImageID'] for r in info] == [r['ImageID'] for r in truth]
    assert all(r['ans'] == '0' for r in info) and len({r['ImageID'] for r in info}) == 14
    assert sorted(p.name for p in (demo / 'eval' / 'images').iterdir()) == sorted(r['ImageID'] for r in info)
    assert all(len(r['ImageID']) == 44 and r['ImageID'].endswith('.jpg') for r in info)
    for p in list((demo / 'train' / 'images').rglob('*.jpg')) + list((demo / 'eval' / 'images').iterdir()):
        with Image.open(p) as im: assert (im.format, im.mode, im.size) == ('JPEG', 'RGB', (384, 512))


def test_truth_matches_attributes(demo):
    truth = [int(r['ans']) for r in _rows(demo / 'eval' / 'truth.csv')]
    expected = []
    for i in (6, 7):  # eval persons continue the numbering
        g, a = person_attrs(3, i)
        expected += [labels.encode(labels.mask_from_stem(s), g, labels.age_group(a)) for s in PHOTO_STEMS]
    assert sorted(truth) == sorted(expected)
    for r in _rows(demo / 'train' / 'train.csv'):
        g, a = person_attrs(3, int(r['id']) - 1)
        assert (labels.GENDERS[g], a) == (r['gender'], int(r['age']))


def test_age_distribution():
    ages = np.array([person_attrs(0, i)[1] for i in range(2000)])
    assert ages.min() >= 18 and ages.max() == 60
    assert 0.4 < (ages < 30).mean() < 0.5 and 0.07 < (ages == 60).mean() < 0.11 and 0.12 < (ages >= 57).mean() < 0.18
    assert 0.45 < np.mean([person_attrs(0, i)[0] for i in range(2000)]) < 0.55


def test_mask_changes_lower_face_only(demo):
    for folder in (demo / 'train' / 'images').iterdir():
        normal = np.asarray(Image.open(folder / 'normal.jpg'), dtype=np.float32)
        for stem in ('mask1', 'incorrect_mask'):
            other = np.asarray(Image.open(folder / f'{stem}.jpg'), dtype=np.float32)
            assert np.abs(other[300:340, 150:234] - normal[300:340, 150:234]).mean() > 20  # chin
            assert np.abs(other[:60, :60] - normal[:60, :60]).mean() < 15  # background corner
        mask = np.asarray(Image.open(folder / 'mask1.jpg'), dtype=np.float32)
        assert np.abs(mask[240:290, 160:224] - normal[240:290, 160:224]).mean() > 20  # nose and mouth


def test_deterministic(tmp_path):
    a = _files(make_demo(tmp_path / 'a', persons=4, eval_persons=1, seed=7))
    b = _files(make_demo(str(tmp_path / 'b'), persons=4, eval_persons=1, seed=7))
    c = _files(make_demo(tmp_path / 'c', persons=4, eval_persons=1, seed=8))
    assert a == b and a != c
    assert not any(p.name.startswith('.') for p in tmp_path.iterdir())  # no temporary folder left


def test_no_eval(tmp_path):
    out = make_demo(tmp_path / 'x', persons=4, eval_persons=0)
    assert sorted(p.name for p in out.iterdir()) == ['train']


def test_refuses_nonempty(tmp_path):
    out = tmp_path / 'full'
    out.mkdir()
    (out / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='full'): make_demo(out, persons=4, eval_persons=0)
    assert (out / 'keep.txt').read_text() == 'x'
    (tmp_path / 'empty').mkdir()
    assert (make_demo(tmp_path / 'empty', persons=4, eval_persons=0) / 'train' / 'train.csv').exists()


@pytest.mark.parametrize('kw', [dict(persons=3), dict(persons=0), dict(eval_persons=-1), dict(persons=4.5), dict(seed=-1)])
def test_bad_args(tmp_path, kw):
    with pytest.raises(ValueError): make_demo(tmp_path / 'bad', **{'persons': 4, 'eval_persons': 0, **kw})
    assert not (tmp_path / 'bad').exists()


def test_demo_dir_cached(tmp_path, monkeypatch):
    monkeypatch.setenv('FASTMASK_CACHE', str(tmp_path / 'cache'))
    assert cache_root() == tmp_path / 'cache' and cache_root().is_dir()
    d = demo_dir(persons=4, eval_persons=1, seed=2)
    assert d == tmp_path / 'cache' / 'demo-p4-e1-s2' and (d / 'eval' / 'truth.csv').exists()
    t = (d / 'train' / 'train.csv').stat().st_mtime_ns
    assert demo_dir(persons=4, eval_persons=1, seed=2) == d and (d / 'train' / 'train.csv').stat().st_mtime_ns == t
