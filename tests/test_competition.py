"""The competition layout reader on small generated layouts."""
import pandas as pd
import pytest
from PIL import Image

from fastmask.errors import LayoutError
from fastmask.sources.open import open_data
from fastmask.sources.competition import read_eval, read_train, read_truth

STEMS = [f'mask{i}' for i in range(1, 6)] + ['incorrect_mask', 'normal']


def make_layout(root, people, exts=('.jpg', '.jpeg', '.png'), hidden=True, eval_ids=('a.jpg', 'b.png')):
    "people: list of (id, gender, age); photos get rotating extensions and macOS `._` twins."
    img = Image.new('RGB', (384, 512), (120, 80, 60))
    rows = []
    for i, (pid, gender, age) in enumerate(people):
        folder = f'{pid}_{gender}_Asian_{age}'
        d = root / 'train' / 'images' / folder
        d.mkdir(parents=True)
        for j, stem in enumerate(STEMS):
            ext = exts[(i + j) % len(exts)]
            img.save(d / f'{stem}{ext}')
            if hidden: (d / f'._{stem}{ext}').write_bytes(b'\x00\x05\x16\x07')
        rows.append(dict(id=pid, gender=gender, race='Asian', age=age, path=folder))
    pd.DataFrame(rows).to_csv(root / 'train' / 'train.csv', index=False)
    if eval_ids:
        (root / 'eval' / 'images').mkdir(parents=True)
        for e in eval_ids: img.save(root / 'eval' / 'images' / e)
        pd.DataFrame({'ImageID': list(eval_ids), 'ans': 0}).to_csv(root / 'eval' / 'info.csv', index=False)
    return root


@pytest.fixture
def layout(tmp_path):
    return make_layout(tmp_path, [('000001', 'female', 45), ('000002', 'male', 60), ('000003', 'male', 22)])


def test_reader_rows_labels_and_hidden_files(layout):
    df = read_train(layout)
    assert len(df) == 21
    assert not df['path'].str.contains('/._').any()
    assert set(df['path'].str.rsplit('.', n=1).str[1]) == {'jpg', 'jpeg', 'png'}
    p1 = df[df.person == '000001']
    assert sorted(p1['mask'].tolist()) == [0, 0, 0, 0, 0, 1, 2]
    assert (p1['gender'] == 1).all() and (p1['age'] == 45).all() and (p1['age_group'] == 1).all()
    row = df[(df.person == '000002') & (df.photo == 'incorrect_mask')].iloc[0]
    assert row['label'] == 1 * 6 + 0 * 3 + 2


def test_age_cut_parameter_changes_groups(tmp_path):
    root = make_layout(tmp_path, [('000001', 'female', 58), ('000002', 'male', 40)], eval_ids=())
    assert read_train(root)['age_group'].max() == 1
    assert read_train(root, age_cut=57).query("person == '000001'")['age_group'].eq(2).all()


def test_eval_rows_in_info_order(tmp_path):
    root = make_layout(tmp_path, [('000001', 'female', 30), ('000002', 'male', 40)], eval_ids=('z.jpg', 'a.jpg', 'm.png'))
    ev = read_eval(root)
    assert ev['ImageID'].tolist() == ['z.jpg', 'a.jpg', 'm.png']
    assert ev['path'].str.endswith('m.png').iloc[2]


def test_missing_photo_is_one_line_error(layout):
    next((layout / 'train' / 'images' / '000001_female_Asian_45').glob('normal.*')).unlink()
    with pytest.raises(LayoutError, match='missing photo.*normal'):
        read_train(layout)


def test_bad_folder_name_and_missing_folder(tmp_path):
    root = make_layout(tmp_path, [('000001', 'female', 30), ('000002', 'male', 40)], eval_ids=())
    df = pd.read_csv(root / 'train' / 'train.csv')
    df.loc[0, 'path'] = '000001_female_Asian'
    df.to_csv(root / 'train' / 'train.csv', index=False)
    with pytest.raises(LayoutError, match='train.csv row 2'):
        read_train(root)
    df.loc[0, 'path'] = '000009_female_Asian_30'
    df.to_csv(root / 'train' / 'train.csv', index=False)
    with pytest.raises(LayoutError, match='does not exist'):
        read_train(root)


def test_missing_eval_image(layout):
    (layout / 'eval' / 'images' / 'a.jpg').unlink()
    with pytest.raises(LayoutError, match='a.jpg'):
        read_eval(layout)


def test_truth_reader_rejects_bad_classes(tmp_path):
    p = tmp_path / 't.csv'
    pd.DataFrame({'ImageID': ['a', 'b'], 'ans': [3, 18]}).to_csv(p, index=False)
    with pytest.raises(LayoutError, match='row 3'):
        read_truth(p)


def test_open_data_errors(tmp_path):
    with pytest.raises(LayoutError, match='does not exist'):
        open_data(tmp_path / 'nope')
    with pytest.raises(LayoutError, match='not a competition layout'):
        open_data(tmp_path)


def test_open_demo_layout(tiny_demo):
    src = open_data(tiny_demo)
    assert len(src.train) == 16 * 7 and len(src.eval) == 4 * 7 and len(src.truth) == 4 * 7
    assert src.tasks == ('all', 'mask', 'gender', 'age')
