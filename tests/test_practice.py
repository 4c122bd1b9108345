"""Practice-data builder: name parsing, layout, labels carried over, masks where they belong, determinism."""
import hashlib
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from fastmask.errors import LayoutError
from fastmask.labels import decode, mask_from_stem
from fastmask.sources.landmarks import plausible, template_landmarks
from fastmask.sources.competition import read_eval, read_train, read_truth
from fastmask.sources.practice import FRAMINGS, face_alpha, make_proxy, render_person, table_faces, utkface_faces
from optional import need

FACES = [(25, 0, 2), (67, 1, 0), (41, 0, 1), (19, 1, 3), (33, 1, 2), (58, 0, 4)]


def _face(seed: int) -> Image.Image:
    "A simple drawn 200x200 face whose eyes, nose and mouth sit at the template's positions."
    rng = np.random.default_rng(seed)
    im = Image.new('RGB', (200, 200), tuple(int(v) for v in rng.integers(60, 200, 3)))
    d = ImageDraw.Draw(im)
    skin = tuple(int(v) for v in rng.integers(120, 230, 3))
    d.ellipse([20, -30, 180, 200], fill=skin)
    lm = template_landmarks(200, 200)
    for x, y in lm[:2]: d.ellipse([x - 9, y - 5, x + 9, y + 5], fill=(30, 30, 30))
    d.polygon([(lm[2][0], lm[2][1] - 30), (lm[2][0] - 10, lm[2][1]), (lm[2][0] + 10, lm[2][1])], fill=(90, 50, 40))
    d.line([tuple(lm[3]), tuple(lm[4])], fill=(150, 40, 50), width=6)
    return im


@pytest.fixture(scope='module')
def faces_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('utk')
    for i, (age, g, race) in enumerate(FACES): _face(i).save(d / f'{age}_{g}_{race}_2017011617452{i}.jpg.chip.jpg')
    _face(9).save(d / '39_1_20170116174525125.jpg.chip.jpg')  # no race: malformed
    _face(9).save(d / 'portrait.jpg')                          # malformed
    _face(9).save(d / '0_1_0_20170116174525125.jpg.chip.jpg')  # age 0
    (d / '._25_0_2_20170116174525120.jpg.chip.jpg').write_bytes(b'x')  # macOS fork: ignored
    (d / 'notes.txt').write_text('ignored')
    return d


@pytest.fixture(scope='module')
def built(faces_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp('proxy') / 'p'
    return out, make_proxy(faces_dir, out, persons=4, eval_persons=2, seed=3, detector='template')


def test_utkface_names_parsed_and_malformed_counted(faces_dir):
    faces, skipped = utkface_faces(faces_dir)
    assert sorted((f.age, f.gender) for f in faces) == sorted((a, g) for a, g, _ in FACES)
    assert skipped == {'malformed name': 2, 'age out of range': 1}


def test_layout_valid_and_labels_carried_over(built):
    out, summary = built
    assert summary['persons'] == 4 and summary['skipped_total'] == 3 and summary['template_fallbacks'] == 6
    df = read_train(out)
    assert len(df) == 28 and sorted(df['photo'].unique()) == sorted(['incorrect_mask', 'normal'] + [f'mask{i}' for i in range(1, 6)])
    src = pd.read_csv(out / 'proxy_sources.csv', dtype={'id': str})
    for _, s in src[src['split'] == 'train'].iterrows():
        age, gender, _ = map(int, s['source'].rsplit('/', 1)[1].split('_')[:3])
        rows = df[df['person'] == s['id']]
        assert (rows['age'] == age).all() and (rows['gender'] == gender).all()
    ev, truth = read_eval(out), read_truth(out / 'eval' / 'truth.csv')
    assert len(ev) == 14 and set(truth['ImageID']) == set(ev['ImageID'])
    m, g, a = decode(truth['ans'].to_numpy())
    assert sorted(np.bincount(m)) == [2, 2, 10]
    with Image.open(df['path'].iloc[0]) as im: assert im.size == (384, 512)


def test_masks_cover_the_lower_face_only():
    lm = template_landmarks(200, 200)
    photos = render_person(_face(0), lm, np.random.default_rng(0))
    arr = {k: np.asarray(v, dtype=np.float32) for k, v in photos.items()}
    # the face is placed with its eyes at y=190..215, its chin ~130 px lower; compare with the bare photo
    lower = lambda a: a[240:370, 150:234]
    upper = lambda a: a[130:185, 130:254]
    for stem in ['mask1', 'mask2', 'mask3', 'mask4', 'mask5', 'incorrect_mask']:
        dl = np.abs(lower(arr[stem]) - lower(arr['normal'])).mean()
        du = np.abs(upper(arr[stem]) - upper(arr['normal'])).mean()
        assert dl > 2 * du + 5, (stem, dl, du)
    # five different masks: the worn photos differ from one another in the lower face
    worn = [lower(arr[f'mask{i}']).mean((0, 1)) for i in range(1, 6)]
    assert min(np.abs(worn[i] - worn[j]).sum() for i in range(5) for j in range(i + 1, 5)) > 3


def _in_face_frame(size, lm, framing, box):
    "The alpha a portrait takes from a source image, cut to `box` (the tight crop's place in it), in [0, 1]."
    return np.asarray(face_alpha(size, lm, framing), dtype=np.float32)[box[1]:box[3], box[0]:box[2]] / 255


@pytest.mark.parametrize('framing', list(FRAMINGS))
def test_one_framing_for_tight_and_wide_crops(framing):
    # the same face as a tight UTKFace-style 200x200 crop and inside a wide 420x480 photo (hair, ears, background)
    tight = template_landmarks(200, 200)
    off = np.array([110, 120], dtype=np.float32)
    box = (110, 120, 310, 320)
    a_tight = _in_face_frame((200, 200), tight, framing, (0, 0, 200, 200))
    a_wide_all = np.asarray(face_alpha((420, 480), tight + off, framing), dtype=np.float32) / 255
    a_wide = a_wide_all[box[1]:box[3], box[0]:box[2]]
    shown_outside = a_wide_all.sum() - a_wide.sum()        # what the wide photo shows beyond the tight crop
    if framing == 'face':
        assert shown_outside < 0.02 * a_wide_all.sum()         # the oval fits inside a tight crop...
        assert np.abs(a_tight - a_wide).mean() < 0.03          # ...so both sources show the same part of the face
        assert a_tight[40:135, 45:140].min() > 0.9             # eye to eye, eyes to mouth
    else:                                                      # the earlier framing: each source's own outline
        assert shown_outside > 0.5 * a_wide.sum()


def test_face_framing_turns_with_the_face():
    lm = template_landmarks(200, 200)
    c = lm[:2].mean(0)
    rot = lambda p, t: (p - c) @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]], dtype=np.float32) + c
    big = lambda l: np.asarray(face_alpha((600, 600), l + 200, 'face'), dtype=np.float32) / 255
    upright, turned = big(lm), big(rot(lm, np.pi / 2))
    ys, xs = np.nonzero(upright > 0.5)
    ys2, xs2 = np.nonzero(turned > 0.5)
    assert (ys.max() - ys.min()) > (xs.max() - xs.min())      # taller than wide upright
    assert (xs2.max() - xs2.min()) > (ys2.max() - ys2.min())  # wider than tall when the face lies on its side


def test_framing_recorded_and_checked(faces_dir, tmp_path):
    s = make_proxy(faces_dir, tmp_path / 'f', persons=2, eval_persons=0, detector='template', framing='face')
    assert s['framing'] == 'face'
    import json
    assert json.loads((tmp_path / 'f' / 'proxy.json').read_text())['framing'] == 'face'
    assert make_proxy(faces_dir, tmp_path / 'd', persons=2, eval_persons=0, detector='template')['framing'] == 'source'
    with pytest.raises(ValueError, match="unknown framing 'hair'"):
        make_proxy(faces_dir, tmp_path / 'g', persons=2, eval_persons=0, detector='template', framing='hair')
    assert not (tmp_path / 'g').exists()
    from typer.testing import CliRunner
    from fastmask.cli import app
    for opt, val in (('--framing', 'hair'), ('--detector', 'dlib')):
        r = CliRunner().invoke(app, ['data', 'proxy', '--faces', str(faces_dir), '--out', str(tmp_path / 'h'),
                                     '--persons', '2', '--eval-persons', '0', opt, val])
        assert r.exit_code == 1 and f"{opt}: unknown" in r.output and 'Traceback' not in r.output, r.output
        assert not (tmp_path / 'h').exists()


def test_deterministic_per_seed(faces_dir, built, tmp_path):
    out, _ = built
    again = make_proxy(faces_dir, tmp_path / 'same', persons=4, eval_persons=2, seed=3, detector='template')
    other = make_proxy(faces_dir, tmp_path / 'other', persons=4, eval_persons=2, seed=4, detector='template')
    digest = lambda root: {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
                           for p in sorted(root.rglob('*.jpg'))}
    assert digest(out) == digest(tmp_path / 'same')
    assert digest(out) != digest(tmp_path / 'other')
    assert again['template_fallbacks'] == other['template_fallbacks'] == 6


def test_refusals(faces_dir, built, tmp_path):
    with pytest.raises(FileExistsError): make_proxy(faces_dir, built[0], persons=2, eval_persons=0, detector='template')
    with pytest.raises(LayoutError, match='6 usable faces'):
        make_proxy(faces_dir, tmp_path / 'big', persons=10, eval_persons=0, detector='template')
    assert not (tmp_path / 'big').exists() and not list(tmp_path.glob('.big*'))


def test_table_faces_bins_and_bad_rows(tmp_path):
    for i in range(5): _face(i).save(tmp_path / f'{i}.jpg')
    (tmp_path / 'labels.csv').write_text('file,gender,age,race\n0.jpg,Male,50-59,East_Asian\n1.jpg,Female,more than 70,White\n'
                                         '2.jpg,Female,25-34,White\n3.jpg,x,20,White\n4.jpg,Male,31,Indian\n9.jpg,Male,31,Indian\n')
    faces, skipped = table_faces(tmp_path / 'labels.csv')
    assert [(f.path.name, f.gender) for f in faces] == [('0.jpg', 0), ('1.jpg', 1), ('4.jpg', 0)]
    assert [f.age for f in faces][2] == 31 and faces[0].race == 'East Asian'
    assert skipped == {'bad age': 1, 'bad gender': 1, 'missing image': 1}


def test_cli_builds_and_reports(faces_dir, tmp_path):
    from typer.testing import CliRunner
    from fastmask.cli import app
    r = CliRunner().invoke(app, ['data', 'proxy', '--faces', str(faces_dir), '--out', str(tmp_path / 'c'),
                                 '--persons', '3', '--eval-persons', '0', '--detector', 'template'])
    assert r.exit_code == 0, r.output
    assert 'template_fallbacks' in r.output and len(read_train(tmp_path / 'c')) == 21
    r = CliRunner().invoke(app, ['data', 'proxy', '--faces', str(faces_dir), '--out', str(tmp_path / 'e'), '--persons', '2',
                                 '--eval-persons', '0', '--detector', 'template', '--min-age', '18', '--max-age', '60'])
    assert r.exit_code == 0, r.output
    assert set(read_train(tmp_path / 'e')['age']) <= {25, 41, 19, 33, 58} and 'outside_ages        1' in r.output
    r = CliRunner().invoke(app, ['data', 'proxy', '--faces', str(tmp_path / 'none'), '--out', str(tmp_path / 'd')])
    assert r.exit_code == 1 and 'does not exist' in r.output


def test_real_faces_with_mtcnn(shared_data, tmp_path):
    need('facenet_pytorch', reason='MTCNN landmarks need facenet-pytorch')
    d = tmp_path / 'utk'
    d.mkdir()
    for f in sorted((shared_data / 'utkface' / 'images').iterdir())[:5]: (d / f.name).symlink_to(f)
    summary = make_proxy(d, tmp_path / 'p', persons=4, eval_persons=1, seed=0, detector='mtcnn', ages=None)
    assert summary['detector'] == 'mtcnn' and 0 <= summary['template_fallbacks'] <= 5
    assert len(read_train(tmp_path / 'p')) == 28
    assert all(mask_from_stem(s) in (0, 1, 2) for s in read_train(tmp_path / 'p')['photo'])


def test_plausible_landmarks():
    lm = template_landmarks(200, 200)
    assert plausible(lm, 200, 200)
    assert not plausible(lm[[1, 0, 2, 3, 4]], 200, 200)  # eyes swapped
    assert not plausible(lm * 0.05, 200, 200)              # tiny face


def test_without_facenet_the_template_is_used(monkeypatch):
    import sys
    from fastmask.errors import FastmaskError
    from fastmask.sources.landmarks import LandmarkDetector
    monkeypatch.setitem(sys.modules, 'facenet_pytorch', None)  # import fails
    det = LandmarkDetector('auto')
    assert det.name == 'template'
    (lm, fell), = det([_face(0)])
    assert fell and np.allclose(lm, template_landmarks(200, 200))
    with pytest.raises(FastmaskError, match='pip install --no-deps facenet-pytorch'): LandmarkDetector('mtcnn')


def test_default_is_adults_like_the_competition(tmp_path):
    d = tmp_path / 'faces'
    d.mkdir()
    for i, age in enumerate((9, 30, 70)): _face(i).save(d / f'{age}_0_0_2017011617452{i}.jpg.chip.jpg')
    s = make_proxy(d, tmp_path / 'p', persons=2, eval_persons=0, detector='template')
    assert s['outside_ages'] == 1 and sorted(read_train(tmp_path / 'p')['age'].unique()) == [30, 70]
    with pytest.raises(LayoutError, match='usable faces'):
        make_proxy(d, tmp_path / 'q', persons=3, eval_persons=0, detector='template')
    assert make_proxy(d, tmp_path / 'r', persons=3, eval_persons=0, detector='template', ages=None)['outside_ages'] == 0


def test_several_sources_make_one_practice_set(faces_dir, tmp_path):
    "Two sources (UTKFace names and a labels CSV, AAF's format) pooled; proxy.json records the mix per source and side."
    from fastmask.io import read_json
    from fastmask.sources.faces import draw_mix, source_format
    table = tmp_path / 'aaf'
    table.mkdir()
    rows = []
    for i, f in enumerate(sorted(faces_dir.glob('*.jpg'))[:6]):
        shutil.copy(f, table / f'a{i}.jpg')
        rows.append(f"a{i}.jpg,{'female' if i % 2 else 'male'},{30 + i}")
    (table / 'labels.csv').write_text('path,gender,age\n' + '\n'.join(rows) + '\n')
    assert source_format(table / 'labels.csv') == 'csv' and source_format(faces_dir) == 'utkface'
    assert source_format(table) == 'csv' and source_format(faces_dir, 'aaf') == 'csv'
    s = make_proxy([faces_dir, (table / 'labels.csv', 'aaf')], tmp_path / 'mix', persons=6, eval_persons=2, seed=1,
                   detector='template', balance=True)
    mix = {m['format']: m for m in s['mix']}
    assert set(mix) == {'utkface', 'csv'} and sum(m['persons'] for m in s['mix']) == 6
    assert sum(m['eval_persons'] for m in s['mix']) == 2 and mix['csv']['persons'] + mix['csv']['eval_persons'] == 4
    assert read_json(tmp_path / 'mix' / 'proxy.json')['mix'] == s['mix'] and isinstance(s['source'], list)
    src = pd.read_csv(tmp_path / 'mix' / 'proxy_sources.csv')
    assert src['source'].str.contains('/aaf/').sum() == 4                      # balanced: 4 of 8 from each source
    pool = [(0, i) for i in range(10)] + [(1, i) for i in range(2)]
    assert sum(k == 1 for k, _ in draw_mix(pool, 2, 6, 0, balance=True)) == 2   # capped by the small source's size
    assert len(draw_mix(pool, 2, 6, 0, balance=False)) == 6
