"""`check_data` names every kind of bad input; exotic-but-valid images pass and load upright; `--skip-bad` reading."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fastmask.sources.check import DataCheckError, check_data, check_image, prepare_data
from fastmask.errors import LayoutError


def _folders(root: Path) -> list[Path]:
    return [root / 'train' / 'images' / n for n in pd.read_csv(root / 'train' / 'train.csv', dtype=str)['path']]


def _rename(root: Path, folder: Path, new: str) -> Path:
    "Rename a person folder and its train.csv row."
    csv = root / 'train' / 'train.csv'
    df = pd.read_csv(csv, dtype=str)
    row = df['path'] == folder.name
    df.loc[row, 'path'], df.loc[row, 'id'] = new, new.split('_')[0]
    df.to_csv(csv, index=False)
    return folder.rename(folder.parent / new)


def make_bad_layout(src: Path, dst: Path) -> dict[str, Path]:
    "Copy a demo layout and break it in every way the check knows; return {kind: the path the check must name}."
    shutil.copytree(src, dst)
    f = _folders(dst)
    bad = {}
    (f[0] / 'mask2.jpg').write_bytes(b''); bad['empty'] = f[0] / 'mask2.jpg'
    data = (f[1] / 'mask3.jpg').read_bytes()
    (f[1] / 'mask3.jpg').write_bytes(data[:len(data) // 2]); bad['truncated'] = f[1] / 'mask3.jpg'
    (f[2] / 'mask4.jpg').write_text('not a picture'); bad['not-image'] = f[2] / 'mask4.jpg'
    (f[3] / 'notes.txt').write_text('x'); bad['extra-file'] = f[3] / 'notes.txt'
    (f[3] / '._mask1.jpg').write_bytes(b'\0\5\26\7')  # macOS resource fork: ignored, never a problem
    (f[4] / 'normal.jpg').unlink(); bad['missing-photo'] = f[4]
    Image.open(f[5] / 'mask1.jpg').save(f[5] / 'mask1.png'); bad['duplicate-photo'] = f[5] / 'mask1.png'
    bad['folder-name'] = _rename(dst, f[6], 'not-a-person-folder')
    bad['gender'] = _rename(dst, f[7], f[7].name.split('_')[0] + '_robot_Asian_30')
    bad['age'] = _rename(dst, f[8], f[8].name.split('_')[0] + '_male_Asian_150')
    pid = f[9].name.split('_')[0]
    twin = f[10].parent / f'{pid}_female_Asian_33'
    shutil.copytree(f[10], twin)
    csv = dst / 'train' / 'train.csv'
    df = pd.read_csv(csv, dtype=str)
    df = pd.concat([df, pd.DataFrame([[pid, 'female', 'Asian', '33', twin.name],
                                      ['009999', 'male', 'Asian', '40', '009999_male_Asian_40']], columns=df.columns)])
    df.to_csv(csv, index=False)
    bad['duplicate-id'] = twin
    bad['no-folder'] = dst / 'train' / 'images' / '009999_male_Asian_40'
    shutil.copytree(f[11], f[11].parent / '008888_male_Asian_25'); bad['no-row'] = f[11].parent / '008888_male_Asian_25'
    info = dst / 'eval' / 'info.csv'
    ev = pd.read_csv(info, dtype=str)
    pd.concat([ev, pd.DataFrame([['gone.jpg', '0']], columns=ev.columns)]).to_csv(info, index=False)
    bad['eval-missing'] = dst / 'eval' / 'images' / 'gone.jpg'
    bad['label-noise'] = _rename(dst, f[12], '004432_' + f[12].name.split('_', 1)[1])
    df = pd.read_csv(csv, dtype=str)
    df.loc[df['path'] == f[13].name, 'age'] = '99'
    df.to_csv(csv, index=False)
    bad['csv-mismatch'] = f[13]
    return bad


@pytest.fixture(scope='module')
def bad_layout(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp('bad') / 'data'
    return root, make_bad_layout(tiny_demo, root)


def test_clean_data_passes(tiny_demo):
    r = check_data(tiny_demo)
    assert r.ok and not r.problems and r.n_people == 16 and r.n_images == 16 * 7 + 4 * 7
    assert 'data ok' in r.summary()


def test_every_bad_kind_is_named(bad_layout):
    root, bad = bad_layout
    r = check_data(root, cache=False)
    found = {(p.kind, Path(p.path)) for p in r.problems}
    for kind, path in bad.items(): assert (kind, path) in found, (kind, path, r.lines())
    assert not any('._mask1' in p.path for p in r.problems)
    assert not r.ok and len(r.errors) == len(bad) - 1  # everything but the label-noise notice
    assert [p.kind for p in r.notices] == ['label-noise']
    lines = r.lines()
    assert len(lines) == len(r.problems) and all(': ' in l for l in lines)
    assert f"{bad['empty']}: zero-byte file" in lines
    s = r.summary()
    assert f'{len(bad) - 1} problem(s)' in s and 'label-noise notice' in s


def test_refuse_then_skip_bad(bad_layout):
    root, bad = bad_layout
    with pytest.raises(DataCheckError) as e: prepare_data(root, cache=False)
    msg = str(e.value)
    assert '\n' not in msg and 'more problem(s)' in msg and '--skip-bad' in msg
    src, prep = prepare_data(root, skip_bad=True, fix_labels=True)
    paths = set(src.train['path'])
    for kind in ('empty', 'truncated', 'not-image', 'duplicate-photo'): assert str(bad[kind]) not in paths
    people = set(src.train['folder'])
    for kind in ('folder-name', 'gender', 'age', 'duplicate-id', 'no-row', 'csv-mismatch'): assert bad[kind].name not in people
    assert bad['missing-photo'].name in people and (src.train['folder'] == bad['missing-photo'].name).sum() == 6
    assert 'gone.jpg' not in set(src.eval['ImageID']) and len(src.eval) == 4 * 7
    sk = prep.report.skipped()
    assert str(bad['truncated']) in set(sk['path']) and str(bad['missing-photo']) not in set(sk['path'])
    cfg = prep.config()
    assert cfg['fix_labels'] and [c['person'] for c in cfg['label_fixes']] == ['004432'] and cfg['skipped'] == len(sk)


def test_fingerprint_follows_content(tiny_demo, tmp_path):
    a = check_data(tiny_demo).fingerprint()
    assert a == check_data(tiny_demo).fingerprint()
    root = tmp_path / 'copy'
    shutil.copytree(tiny_demo, root)
    assert check_data(root).fingerprint() == a  # relative paths + content: a copy has the same fingerprint
    f = _folders(root)[0] / 'mask1.jpg'
    Image.new('RGB', (384, 512), 'red').save(f)
    assert check_data(root).fingerprint() != a


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'P', 'CMYK', 'I;16'])
def test_exotic_modes_are_valid(tmp_path, mode):
    from fastmask.data.augment import FaceImage
    f = tmp_path / ('x.png' if mode != 'CMYK' else 'x.jpg')
    Image.new('RGB', (30, 40), (200, 10, 10)).convert(mode).save(f)
    assert check_image(f)[1:] == (None, None)
    im = FaceImage.create(f)
    assert im.mode == 'RGB' and im.size == (30, 40)


def test_exif_rotated_image_loads_upright(tmp_path):
    from fastmask.data.augment import FaceImage
    a = np.zeros((40, 30, 3), np.uint8); a[:10] = 255  # upright: 30 wide, 40 high, white band on top
    stored = Image.fromarray(a).transpose(Image.Transpose.ROTATE_90)  # stored sideways (40 x 30)
    exif = Image.Exif(); exif[0x0112] = 6  # orientation 6: rotate 90 CW to view
    f = tmp_path / 'rot.jpg'
    stored.save(f, exif=exif.tobytes(), quality=95)
    assert check_image(f)[1] is None
    im = np.asarray(FaceImage.create(f))
    assert im.shape == (40, 30, 3) and im[:10].mean() > 200 and im[-10:].mean() < 50


def test_labels_csv(tmp_path, tiny_demo):
    imgs = sorted((tiny_demo / 'train' / 'images').glob('*/*.jpg'))[:4]
    (tmp_path / 'bad.jpg').write_bytes(b'')
    rows = [(str(imgs[0]), 'wear', 'male', '30'), (str(imgs[1]), 'sideways', 'male', '30'),
            (str(imgs[2]), 'wear', 'robot', '30'), (str(imgs[3]), 'wear', 'female', '300'),
            ('missing.jpg', 'wear', 'male', '30'), ('bad.jpg', 'wear', 'male', '30')]
    csv = tmp_path / 'labels.csv'
    pd.DataFrame(rows, columns=['path', 'mask', 'gender', 'age']).to_csv(csv, index=False)
    r = check_data(csv, cache=False)
    assert sorted(p.kind for p in r.errors) == ['age', 'empty', 'gender', 'mask', 'no-folder']
    src, _ = prepare_data(csv, skip_bad=True)
    assert list(src.train['path']) == [str(imgs[0])] and src.root == csv


def test_not_a_layout(tmp_path):
    with pytest.raises(LayoutError, match='does not exist'): check_data(tmp_path / 'nope')
    with pytest.raises(LayoutError, match='not a competition layout'): check_data(tmp_path)
