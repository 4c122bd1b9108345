"""One reader per format: strict (first problem raises) and lenient (every problem recorded, the good rows returned)."""
import shutil
import tempfile

import pandas as pd
import pytest
from PIL import Image

from fastmask.errors import LayoutError
from fastmask.sources.competition import read_eval, read_layout, read_train, read_truth
from fastmask.sources.labelled import CSVSource, read_labels_csv
from fastmask.sources.problems import Problems
from test_competition import make_layout


def _people(n):
    return [(f'{i:06d}', 'female' if i % 2 else 'male', 20 + 7 * i) for i in range(1, n + 1)]


def test_layout_strict_and_lenient_agree_on_clean_data(tmp_path):
    root = make_layout(tmp_path, _people(4))
    pd.DataFrame({'ImageID': ['a.jpg', 'b.png'], 'ans': [3, 17]}).to_csv(root / 'eval' / 'truth.csv', index=False)
    ps = Problems()
    strict, lenient = read_layout(root, age_cut=57), read_layout(root, age_cut=57, problems=ps)
    assert ps == []
    assert len(strict.train) == 4 * 7
    for a, b in [(strict.train, lenient.train), (strict.eval, lenient.eval), (strict.truth, lenient.truth)]:
        pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(read_eval(root), read_eval(root, Problems()))


def test_csv_strict_and_lenient_agree_on_clean_data(tmp_path):
    (tmp_path / 'imgs').mkdir()
    for i in range(5): Image.new('RGB', (20, 24), (40 * i, 90, 160)).save(tmp_path / 'imgs' / f'f{i}.jpg')
    csv = tmp_path / 'labels.csv'
    pd.DataFrame({'Path': [f'imgs/f{i}.jpg' for i in range(5)], 'mask': ['wear', 'incorrect', 'not_wear', '0', 'normal'],
                  'gender': ['m', 'f', 'male', 'female', '1'], 'age': ['20', '58', '>=60', '30-59', '61'],
                  'photo': ['a', 'a', 'b', 'c', 'c'], 'race': list('xyzxy')}).to_csv(csv, index=False)
    ps = Problems()
    strict, lenient = read_labels_csv(csv, age_cut=57), read_labels_csv(csv, age_cut=57, problems=ps)
    assert ps == [] and isinstance(lenient, CSVSource) and lenient.kind == 'csv' and lenient.root == csv
    pd.testing.assert_frame_equal(strict.train, lenient.train)
    assert strict.tasks == lenient.tasks == ('all', 'mask', 'gender', 'age')
    assert lenient.train['age_group'].tolist() == [0, 2, 2, 1, 2]


def test_lenient_layout_reports_each_problem_and_keeps_good_people(tmp_path):
    root = make_layout(tmp_path, _people(8), hidden=False)
    folders = pd.read_csv(root / 'train' / 'train.csv', dtype=str)['path'].tolist()
    images = root / 'train' / 'images'
    csv = root / 'train' / 'train.csv'
    df = pd.read_csv(csv, dtype=str)
    df.loc[0, 'path'] = '000001_female_Asian'                           # folder-name (and its folder has no row)
    df.loc[1, 'path'] = '000002_female_Asian_200'                       # age out of range
    df.loc[2, 'age'] = '99'                                             # csv-mismatch
    df.to_csv(csv, index=False)
    shutil.rmtree(images / folders[3])                                  # no-folder
    next((images / folders[4]).glob('normal.*')).unlink()               # missing-photo: the person stays
    (images / folders[5] / 'notes.txt').write_text('x')                # extra-file: the person stays
    Image.new('RGB', (8, 8)).save(images / folders[6] / 'mask1.gif')    # extra-file (not an image extension)
    (root / 'eval' / 'images' / 'b.png').unlink()                       # eval-missing
    ps = Problems()
    src = read_layout(root, problems=ps)
    found = {(p.kind, p.path) for p in ps}
    expect = {('folder-name', str(images / '000001_female_Asian')), ('age', str(images / '000002_female_Asian_200')),
              ('no-row', str(images / folders[0])), ('no-row', str(images / folders[1])),
              ('csv-mismatch', str(images / folders[2])), ('no-folder', str(images / folders[3])),
              ('missing-photo', str(images / folders[4])), ('extra-file', str(images / folders[5] / 'notes.txt')),
              ('extra-file', str(images / folders[6] / 'mask1.gif')),
              ('eval-missing', str(root / 'eval' / 'images' / 'b.png'))}
    assert found == expect and len(ps) == len(expect) and all(p.reason for p in ps)
    assert sorted(src.train['folder'].unique()) == folders[4:]
    assert (src.train['folder'] == folders[4]).sum() == 6 and len(src.train) == 6 + 3 * 7
    assert src.eval['ImageID'].tolist() == ['a.jpg']
    with pytest.raises(LayoutError) as e: read_train(root)              # strict: the first problem, on one line
    assert str(e.value).startswith(f'{csv} row 2: ') and '000001_female_Asian' in str(e.value) and '\n' not in str(e.value)


def test_strict_keeps_its_messages(tmp_path):
    root = make_layout(tmp_path, _people(2), eval_ids=())
    images = root / 'train' / 'images'
    d = images / pd.read_csv(root / 'train' / 'train.csv', dtype=str)['path'][1]
    Image.new('RGB', (8, 8)).save(d / 'MASK2.png')
    with pytest.raises(LayoutError, match=r'two photos named mask2'): read_train(root)
    (d / 'MASK2.png').unlink()
    Image.new('RGB', (8, 8)).save(d / 'mask9.jpg')
    with pytest.raises(LayoutError, match=r"mask9.jpg: 'mask9' is not a mask photo name"): read_train(root)
    t = tmp_path / 'truth.csv'
    t.write_text('ImageID,ans\na,3\nb,x\nc,40\n')
    with pytest.raises(LayoutError, match=r"truth.csv row 3: ans 'x' is not a class 0..17"): read_truth(t)
    ps = Problems()
    assert read_truth(t, ps)['ImageID'].tolist() == ['a'] and [p.path for p in ps] == [f'{t} row 3', f'{t} row 4']


def test_lenient_csv_reports_every_bad_row(tmp_path):
    (tmp_path / 'imgs').mkdir()
    for i in range(4): Image.new('RGB', (20, 24)).save(tmp_path / 'imgs' / f'f{i}.jpg')
    csv = tmp_path / 'labels.csv'
    rows = [('imgs/f0.jpg', 'wear', '30', 'p1'), ('imgs/f1.jpg', 'maybe', '30', 'p1'), ('imgs/f2.jpg', 'wear', '', 'p2'),
            ('imgs/f0.jpg', 'wear', '30', 'p3'), ('imgs/gone.jpg', 'wear', '30', 'p4'), ('', 'wear', '30', 'p5'),
            ('imgs/f3.jpg', 'normal', '>=60', '')]
    pd.DataFrame(rows, columns=['path', 'mask', 'age', 'person']).to_csv(csv, index=False)
    ps = Problems()
    src = read_labels_csv(csv, problems=ps)
    assert [(p.path, p.kind) for p in ps] == [(f'{csv} row 3', 'mask'), (f'{csv} row 4', 'age'),
                                              (f'{csv} row 5', 'duplicate-row'), (f'{csv} row 6', 'no-folder'),
                                              (f'{csv} row 7', 'csv'), (f'{csv} row 8', 'csv')]
    assert src.train['path'].tolist() == [str(tmp_path.resolve() / 'imgs' / 'f0.jpg')] and src.tasks == ('mask', 'age')
    with pytest.raises(LayoutError, match=r'row 3: .maybe. is not a mask state'): read_labels_csv(csv)


def test_skip_bad_labels_csv_writes_no_file(tmp_path, tiny_demo, monkeypatch):
    from fastmask.sources.check import prepare_data
    imgs = sorted((tiny_demo / 'train' / 'images').glob('*/*.jpg'))[:3]
    csv = tmp_path / 'labels.csv'
    pd.DataFrame([(str(imgs[0]), 'wear', 'a'), (str(imgs[1]), 'sideways', 'a'), (str(imgs[2]), 'normal', 'b')],
                 columns=['path', 'mask', 'group']).to_csv(csv, index=False)
    def no_write(*a, **k): raise AssertionError('prepare_data wrote a file')
    for name in ('mkstemp', 'mkdtemp', 'TemporaryDirectory', 'NamedTemporaryFile', 'TemporaryFile', 'SpooledTemporaryFile'):
        monkeypatch.setattr(tempfile, name, no_write)
    monkeypatch.setattr(pd.DataFrame, 'to_csv', no_write)
    before = sorted(tmp_path.rglob('*'))
    src, prep = prepare_data(csv, skip_bad=True, cache=False)
    assert sorted(tmp_path.rglob('*')) == before
    assert isinstance(src, CSVSource) and src.kind == 'csv' and src.root == csv and src.tasks == ('mask',)
    assert src.train['path'].tolist() == [str(imgs[0]), str(imgs[2])] and src.train['person'].tolist() == ['a', 'b']
    assert src.train['mask'].tolist() == [0, 2] and prep.config()['skipped'] == 1


def test_demo_is_resolved_by_open_data(tiny_demo, monkeypatch):
    import fastmask.sources.open as op
    from fastmask.sources.check import check_data
    monkeypatch.setattr(op, 'demo_dir', lambda: tiny_demo)
    r = check_data('demo')
    assert r.root == tiny_demo and r.ok and len(r.rows) == 16 * 7
