"""Face crops: detector chain with fallbacks, cached crops keyed by file, counts in the run folder, predict on crops."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

from fastmask.errors import MissingExtraError
from fastmask.runners.facecrop import FaceCropper, crop_paths, mtcnn_detector, run_preprocess, square_box
from fastmask.io import read_json, write_json
from optional import need

cv2 = need('cv2', reason="face crops need opencv-python-headless (fastmask[facecrop])")


@pytest.fixture
def blank(tmp_path):
    "A 384x512 photo with no face in it."
    p = tmp_path / 'blank.jpg'
    Image.new('RGB', (384, 512), (120, 160, 200)).save(p)
    return p


def test_square_box_is_square_inside_and_contains_face():
    for box in [(100, 120, 200, 260), (0, 0, 50, 60), (300, 400, 384, 512), (10, 10, 380, 500)]:
        l, t, r, b = square_box(box, 384, 512, 0.2)
        assert r - l == b - t and 0 <= l and 0 <= t and r <= 384 and b <= 512
        if (box[2] - box[0]) * 1.4 < 384 and (box[3] - box[1]) * 1.4 < 384:
            assert l <= box[0] and t <= box[1] and r >= box[2] and b >= box[3]


def test_no_face_falls_back_to_original_and_is_counted(blank, tmp_path):
    c = FaceCropper(('cascade',), cache=tmp_path / 'cache')
    crops, counts, fresh = c([blank])
    assert crops == [str(blank.resolve())] and counts['original'] == 1 and counts['cascade'] == 0
    assert fresh['new'] == 1


def test_cache_reuse_and_mtime_invalidation(blank, tmp_path):
    c = FaceCropper(('cascade',), cache=tmp_path / 'cache')
    c([blank])
    assert c([blank])[2] == {'new': 0, 'cached': 1}
    st = blank.stat()
    os.utime(blank, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert c([blank])[2] == {'new': 1, 'cached': 0}
    assert FaceCropper(('cascade',), margin=0.3, cache=tmp_path / 'cache')([blank])[2]['new'] == 1  # other settings


def test_real_faces_are_cropped(shared_data, tmp_path):
    need('facenet_pytorch', reason='MTCNN comes from facenet-pytorch (pip install --no-deps facenet-pytorch)')
    faces = sorted((shared_data / 'utkface' / 'images').glob('*.jpg'))[:4]
    if not faces: pytest.skip('no utkface images')
    crops, counts, _ = FaceCropper(cache=tmp_path / 'cache')(faces)
    assert counts['mtcnn'] + counts['cascade'] >= 3
    for src, cp in zip(faces, crops):
        if cp == str(src.resolve()): continue
        w, h = Image.open(cp).size
        assert abs(w - h) <= 1 and w <= min(Image.open(src).size)


def test_missing_facenet_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'facenet_pytorch', None)
    with pytest.raises(MissingExtraError, match='--no-deps facenet-pytorch'):
        mtcnn_detector()


def test_run_preprocess_follows_the_run_config(blank, tmp_path):
    from dataclasses import replace
    from fastmask.recipes.registry import get_recipe
    run = tmp_path / 'run'
    write_json(run / 'config.json', {'recipe': get_recipe('split_mobilenetv2').to_dict()})
    assert run_preprocess(run, [blank]) == [str(blank)]
    crops = crop_paths([blank], ('cascade',))[0]
    write_json(run / 'config.json', {'recipe': replace(get_recipe('facecrop_densenet121'), detectors=('cascade',)).to_dict()})
    assert run_preprocess(run, [blank]) == crops
    old = dict(name='facecrop_densenet121', description='older run folder', kind='facecrop',   # options as `extras`
               extras=[['preprocess', 'facecrop'], ['detectors', ['cascade']]])
    write_json(run / 'config.json', {'recipe': old})
    assert run_preprocess(run, [blank]) == crops


def test_facecrop_recipe_quick(tiny_demo, tmp_path):
    "The recipe (cascade only and one 18-class model, for speed) records counts and predicts through the crops."
    from fastmask.sources.open import open_data
    from fastmask.inference.predict import model_probs, load_task_model, predict_paths
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    ov = dict(quick=True, size=32, epochs=1, arch='mobilenetv2_100', tasks=('all',),
              preprocess='facecrop', detectors=('cascade',), margin=0.2)
    run = run_recipe(resolve('facecrop_densenet121', **ov), tiny_demo, tmp_path / 'runs', num_workers=0, overrides=ov,
                     log=lambda *_: None)
    s, fc = read_json(run / 'summary.json'), read_json(run / 'facecrop.json')
    src = open_data(tiny_demo)
    assert fc['train']['total'] == len(src.train) == fc['train']['cascade'] + fc['train']['original']
    assert fc['eval']['total'] == len(src.eval) and s['facecrop'] == fc
    from runcheck import check_submission, check_valid_f1
    check_valid_f1(run, src)        # scored on the original photos' labels (valid_preds.csv maps crops back)
    check_submission(run, src)
    import pandas as pd
    assert set(pd.read_csv(run / 'valid_preds.csv')['path']) <= set(src.train['path'])  # original paths
    paths = list(src.eval['path'][:6])
    crops = crop_paths(paths, ('cascade',))[0]
    model, meta = load_task_model(run / 'model_all.pth')
    np.testing.assert_allclose(predict_paths(run, paths), model_probs(model, meta, crops, 8), atol=1e-5)
