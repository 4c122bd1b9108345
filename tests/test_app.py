"""`fastmask app`: the page's answers are `fastmask predict`'s, bad uploads are one line, the mistakes and the run are
read from the run folder, the page works in a real browser, and the exported Space answers the same from a fresh
virtual environment without torch."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app as cli
from fastmask.inference.predict import predict_paths
from fastmask.rundir import RunDir
from fastmask.tools.evaluate import run_probs
from optional import installed, need

from fastmask.app import portable
from fastmask.app.portable import UploadError, read_image

runner = CliRunner()
ONE_LINE = lambda s: s and '\n' not in s and 'Traceback' not in s   # noqa: E731


@pytest.fixture(scope='module')
def run_dir(tiny_demo, tmp_path_factory) -> Path:
    "A finished split-task run (mask, gender, age models) on the tiny demo data."
    from fastmask.recipes import resolve
    from fastmask.runners.run import run_recipe
    return run_recipe(resolve('split_mobilenetv2', quick=True, epochs=1, size=32), tiny_demo,
                      tmp_path_factory.mktemp('apprun'), num_workers=0, log=lambda *a: None)


@pytest.fixture(scope='module')
def photo(tiny_demo) -> Path:
    return sorted((tiny_demo / 'eval' / 'images').glob('*.jpg'))[0]


@pytest.fixture(scope='module')
def answerer(run_dir):
    from fastmask.app.answer import Answerer
    return Answerer(run_dir, mtcnn=False)


def odd_photos(src: Path, folder: Path) -> dict[str, Path]:
    "The photo as an EXIF-rotated JPEG, a CMYK JPEG, a palette PNG and a greyscale one: valid, converted uploads."
    im = Image.open(src).convert('RGB')
    exif = Image.Exif()
    exif[274] = 6                                        # rotated 90 degrees: shown upright after exif_transpose
    out = {'rotated': folder / 'rotated.jpg', 'cmyk': folder / 'cmyk.jpg', 'palette': folder / 'palette.png',
           'grey': folder / 'grey.png'}
    im.transpose(Image.Transpose.ROTATE_90).save(out['rotated'], exif=exif.tobytes(), quality=95)
    im.convert('CMYK').save(out['cmyk'], quality=95)
    im.convert('P').save(out['palette'])
    im.convert('L').save(out['grey'])
    return out


def bad_uploads(src: Path, folder: Path) -> dict[str, Path]:
    "Files that are not usable photos: text, 0 bytes, a truncated JPEG."
    out = {'text': folder / 'notes.txt', 'empty': folder / 'empty.jpg', 'truncated': folder / 'cut.jpg'}
    out['text'].write_text('not a photo\n')
    out['empty'].write_bytes(b'')
    data = src.read_bytes()
    out['truncated'].write_bytes(data[:len(data) // 3])
    return out


# --- what the exported Space shares with the package -------------------------------------------------------------

def test_portable_equals_the_package(photo, tmp_path):
    from fastmask.data.augment import REPORT_CROP, REPORT_MEAN, REPORT_STD, crop_box
    from fastmask.data.block import infer_dl
    from fastmask.labels import class_names, task_names
    assert portable.class_names() == class_names() and all(portable.task_names(t) == task_names(t) for t in ('all', 'mask', 'gender', 'age'))
    assert (portable.REPORT_CROP, portable.REPORT_MEAN, portable.REPORT_STD) == (REPORT_CROP, REPORT_MEAN, REPORT_STD)
    for w, h, f in [(384, 512, REPORT_CROP), (512, 384, REPORT_CROP), (201, 333, 0.5), (640, 480, 1.0)]:
        assert portable.crop_box(w, h, f) == crop_box(w, h, f)
    files = [photo, *odd_photos(photo, tmp_path).values()]
    for stats, crop in [(None, REPORT_CROP), (((0.5,) * 3, (0.5,) * 3), 0.0)]:
        (xb,) = next(iter(infer_dl(files, 48, crop, bs=len(files), num_workers=0, stats=stats, cache=True)))
        mine = np.stack([portable.model_input(read_image(f)[0], 48, crop, stats) for f in files])
        np.testing.assert_allclose(mine, xb.numpy(), rtol=0, atol=1e-6)
    p18 = np.random.default_rng(0).dirichlet(np.ones(18), 4)
    from fastmask.inference.predict import split_tasks
    assert all(np.allclose(portable.split_probs(p18)[t], v) for t, v in split_tasks(p18).items())


def test_odd_photos_are_read_upright_and_said(photo, tmp_path):
    odd = odd_photos(photo, tmp_path)
    upright = Image.open(photo).convert('RGB')
    im, notes = read_image(odd['rotated'])
    assert im.size == upright.size and any('EXIF orientation' in n for n in notes)
    im, notes = read_image(odd['cmyk'])
    assert im.mode == 'RGB' and notes == ['JPEG in CMYK converted to RGB']
    assert read_image(photo)[1] == [] and read_image(odd['grey'])[1] == ['PNG in L converted to RGB']


def test_bad_uploads_are_one_line(photo, tmp_path, monkeypatch):
    bad = bad_uploads(photo, tmp_path)
    want = {'text': 'notes.txt: not an image', 'empty': 'empty.jpg: the file is empty (0 bytes)',
            'truncated': 'cut.jpg: damaged or truncated image'}
    for k, p in bad.items():
        with pytest.raises(UploadError) as e: read_image(p)
        assert str(e.value).startswith(want[k]) and ONE_LINE(str(e.value)), str(e.value)
    with pytest.raises(UploadError, match=r'^gone\.jpg: no file was received$'): read_image(tmp_path / 'gone.jpg')
    big = tmp_path / 'big.png'
    Image.new('L', (7000, 6000)).save(big)              # 42 megapixels in a small file
    with pytest.raises(UploadError, match=r'^big\.png: 7000x6000 pixels, more than the 40-megapixel limit$'): read_image(big)
    monkeypatch.setattr(portable, 'MAX_BYTES', 10_000)
    with pytest.raises(UploadError, match=r'^[0-9a-f]+\.jpg: \d+ kB, larger than the 10 kB limit$'): read_image(photo)


# --- the answers: fastmask predict's numbers ------------------------------------------------------------------------

def test_whole_photo_answer_is_predicts(answerer, run_dir, photo, tmp_path):
    files = [photo, *odd_photos(photo, tmp_path).values()]
    ref18, ref = predict_paths(run_dir, files), run_probs(run_dir, files)
    for i, f in enumerate(files):
        a = answerer(f, whole=True)
        assert not a.error and len(a.faces) == 1 and a.faces[0]['box'] is None
        face = a.faces[0]
        assert face['cls'] == int(ref18[i].argmax()) and face['p'] == pytest.approx(float(ref18[i].max()), abs=1e-6)
        for t in ('mask', 'gender', 'age'): np.testing.assert_allclose(face['tasks'][t], ref[t][i], rtol=0, atol=1e-6)
        assert a.image is not None and ONE_LINE(a.message)
    assert 'EXIF orientation' in answerer(files[1], whole=True).message


def test_bad_uploads_answer_with_a_message(answerer, photo, tmp_path):
    for p in bad_uploads(photo, tmp_path).values():
        a = answerer(p)
        assert a.error and not a.faces and ONE_LINE(a.error) and a.error.startswith(p.name)


class StubMTCNN:
    "Stands in for facenet-pytorch's MTCNN: two sure faces, one unsure (dropped)."
    boxes = np.array([[200., 150., 300., 260.], [40., 60., 160., 190.], [0., 0., 30., 30.]])
    def detect(self, im): return self.boxes, np.array([0.99, 0.97, 0.5])


def test_faces_found_are_cropped_and_predicted(answerer, run_dir, photo, tmp_path, monkeypatch):
    from fastmask.runners.facecrop import square_box
    monkeypatch.setattr(answerer.finder, 'mtcnn', StubMTCNN())
    a = answerer(photo)
    assert [f['box'] for f in a.faces] == [[40.0, 60.0, 160.0, 190.0], [200.0, 150.0, 300.0, 260.0]]   # left to right
    assert a.message.startswith('2 faces found by MTCNN')
    im = Image.open(photo).convert('RGB')
    crops = []
    for i, f in enumerate(a.faces):
        crops.append(tmp_path / f'crop{i}.png')
        im.crop(square_box(f['box'], *im.size, 0.2)).save(crops[-1])
    ref = predict_paths(run_dir, crops)
    assert [f['cls'] for f in a.faces] == list(ref.argmax(1))
    np.testing.assert_allclose([f['p'] for f in a.faces], ref.max(1), rtol=0, atol=1e-6)


def _variant(run_dir: Path, dest: Path, **recipe) -> Path:
    "A copy of the run folder whose config.json records other recipe fields (its kind, face crops)."
    shutil.copytree(run_dir, dest)
    rd = RunDir(dest)
    cfg = rd.read_config()
    rd.write_config(dict(cfg, recipe=dict(cfg['recipe'], **recipe)))
    return dest


def test_composite_runs_answer_as_predict(run_dir, photo, tmp_path):
    from fastmask.app.predictor import Predictor
    kfold = tmp_path / 'kfold'
    kfold.mkdir()
    shutil.copyfile(RunDir(run_dir).config, RunDir(kfold).config)
    cfg = RunDir(kfold).read_config()
    RunDir(kfold).write_config(dict(cfg, recipe=dict(cfg['recipe'], kind='kfold')))
    for i in range(2): shutil.copytree(run_dir, RunDir(kfold).fold(i).path)
    ens = tmp_path / 'ens'
    ens.mkdir()
    RunDir(ens).write_members({'a': run_dir, 'b': RunDir(kfold).fold(1).path})
    for d in (kfold, ens):
        p = Predictor(d)
        assert p.n_models == 6 and p.tasks == ('all', 'mask', 'gender', 'age')
        got, ref = p.probs([photo]), run_probs(d, [photo])
        assert set(got) == set(ref) and all(np.array_equal(got[t], ref[t]) for t in ref)
    np.testing.assert_allclose(Predictor(kfold).probs([photo])['all'], predict_paths(kfold, [photo]), rtol=0, atol=1e-6)


def test_face_crop_runs_crop_as_predict_does(run_dir, photo, tmp_path):
    need('cv2', reason='face crops need opencv-python-headless (fastmask[facecrop])')
    from fastmask.app.answer import Answerer
    from fastmask.runners.facecrop import crop_cache
    fc = _variant(run_dir, tmp_path / 'fc', kind='facecrop', preprocess='facecrop', detectors=['cascade'], margin=0.3)
    a = Answerer(fc)
    assert a.finder.how == "the run's own face crop (cascade, margin 0.3)"
    before = sorted(crop_cache().rglob('*'))
    for whole in (False, True):                          # the run always crops: both give predict's answer
        got = a(photo, whole=whole)
        assert "the run's own face crop" in got.message
        assert got.faces[0]['cls'] == int(predict_paths(fc, [photo])[0].argmax())
        assert got.faces[0]['p'] == pytest.approx(float(predict_paths(fc, [photo])[0].max()), abs=1e-6)
    new = set(crop_cache().rglob('*')) - set(before)
    assert all(str(photo.resolve()) in p.read_text() for p in new if p.suffix == '.json')   # predict's own, not the app's


# --- the mistakes and the run ----------------------------------------------------------------------------------------

def test_mistakes_are_top_losses_ranked_by_loss(run_dir):
    from fastmask.app.mistakes import ANY, class_f1_image, confusion_image, ranked, validation
    from fastmask.plots import top_losses
    v = validation(run_dir)
    assert v.tasks == ['all', 'mask', 'gender', 'age'] and v.source == RunDir.VALID_PREDS
    vp, p = pd.read_csv(RunDir(run_dir).valid_preds), np.load(RunDir(run_dir).valid_probs)
    ref = top_losses(vp, p, k=len(vp))
    got = ranked(v, 'all')
    assert sorted(got['path']) == sorted(ref['path'].astype(str)) and got['loss'].is_monotonic_decreasing
    mask = ranked(v, 'mask')
    assert len(mask) == int((np.load(RunDir(run_dir).task_probs('mask')).argmax(1) != vp['mask']).sum())
    cls = mask['true'].iloc[0]
    assert set(ranked(v, 'mask', cls)['true']) == {cls} and len(ranked(v, 'mask', ANY, k=2)) == min(2, len(mask))
    assert confusion_image(v, 'age').size[0] > 100 and class_f1_image(v, 'all').size[1] > 100


def test_the_run_tab_holds_recipe_data_settings_scores_curves(run_dir):
    from fastmask.app import about
    md = '\n'.join(about.overview(run_dir).values())
    summary = RunDir(run_dir).read_summary()
    for s in ('split_mobilenetv2', 'mobilenetv2_100', '| data | |', 'fingerprint', 'precision', f"| valid_f1 | {summary['valid_f1']:.4g} |"):
        assert s in md, s
    assert [c for _, c in about.curves(run_dir)] == ['age', 'gender', 'mask']
    assert set(about.metrics_table(run_dir)['model']) == {'age', 'gender', 'mask'}


def test_cli_binds_localhost_unless_told(run_dir, monkeypatch, tmp_path):
    import fastmask.app.page as page
    calls = []
    monkeypatch.setattr(page, 'serve', lambda *a, **kw: calls.append((a, kw)))
    assert runner.invoke(cli, ['app', str(run_dir)]).exit_code == 0
    assert calls[-1][1] == dict(host='127.0.0.1', port=None, share=False)
    assert runner.invoke(cli, ['app', str(run_dir), '--host', '0.0.0.0', '--port', '8080', '--share']).exit_code == 0
    assert calls[-1][1] == dict(host='0.0.0.0', port=8080, share=True)
    r = runner.invoke(cli, ['app', str(tmp_path / 'nope')])
    assert r.exit_code == 1 and ONE_LINE(r.output.strip()) and 'run folder does not exist' in r.output
    monkeypatch.undo()
    for args in (['app', str(tmp_path)], ['app', str(tmp_path), '--export', str(tmp_path / 'space')]):
        r = runner.invoke(cli, args)                     # a folder without models: one line, nothing served or written
        assert r.exit_code == 1 and ONE_LINE(r.output.strip()) and str(tmp_path) in r.output, r.output
    assert not (tmp_path / 'space').exists()


# --- a real browser ---------------------------------------------------------------------------------------------------

def test_the_page_in_a_real_browser(run_dir, photo, tiny_demo, tmp_path, monkeypatch):
    from fastmask.app import browser
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio'))   # the uploads land here, not in /tmp/gradio
    if why := browser.missing():
        if os.environ.get('FASTMASK_REQUIRE_BROWSER') == '1': pytest.fail(f'the browser test must run here: {why}')
        pytest.skip(f'no browser test: {why}')
    sub = tmp_path / 'sub.csv'
    r = runner.invoke(cli, ['predict', str(run_dir), '--data', str(tiny_demo), '--out', str(sub)])
    assert r.exit_code == 0, r.output
    ans = int(pd.read_csv(sub).set_index('ImageID').loc[photo.name, 'ans'])
    ref18, ref = predict_paths(run_dir, [photo])[0], run_probs(run_dir, [photo])
    bad = bad_uploads(photo, tmp_path)
    with browser.served(run_dir) as url, browser.chromium(camera=True) as d:
        assert url.startswith('http://127.0.0.1:')
        page = browser.AppPage(d, url).open()
        first = page.upload(photo)
        assert not first['error'] and first['faces'], first
        got = page.choose('whole photo')
        assert got['message'].startswith('the whole photo, as asked') and len(got['faces']) == 1, got
        face = got['faces'][0]
        names = portable.class_names()
        assert face['label'] == names[ans] == names[int(ref18.argmax())] and face['cls'] == str(ans)
        assert face['p'] == pytest.approx(float(ref18.max()), abs=1e-6) and face['p_text'] == f'{100 * ref18.max():.1f}%'
        for t in ('mask', 'gender', 'age'):
            for c, (n, want) in enumerate(zip(portable.task_names(t), ref[t][0])):
                assert face['tasks'][t][n]['p'] == pytest.approx(float(want), abs=1e-6)
                assert face['tasks'][t][n]['text'] == f'{100 * want:.1f}%'
        cam = page.webcam()                              # Chromium's fake camera: a test pattern, answered whole
        assert not cam['error'] and len(cam['faces']) == 1 and cam['message'].startswith(('no face found', 'the whole photo')), cam
        for k in ('text', 'empty'):
            a = page.upload(bad[k])
            assert a['error'] and not a['faces'] and a['message'].startswith(f'error: {bad[k].name}: '), a
        assert 'Traceback' not in d.page_source
        page.tab('Its mistakes')
        assert 'validation images wrong on 18 classes' in page.text('#fm-mistakes-info')
        assert len(page._css('#fm-gallery img')) >= 1
        page.tab('The run')
        assert 'split_mobilenetv2' in page.text('#fm-overview')


# --- the exported Space, from a fresh virtual environment ---------------------------------------------------------

SPACE_PACKAGES = ('onnxruntime', 'gradio', 'numpy', 'pillow')


def _clean_venv(where: Path) -> Path:
    "A virtual environment without system site-packages holding only onnxruntime, gradio, numpy and pillow."
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(where)], check=True, timeout=120)
    py = where / 'bin' / 'python'
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '-q', '--no-compile',
                        *SPACE_PACKAGES], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return py


def test_exported_space_answers_like_predict_without_torch(run_dir, photo, tiny_demo, tmp_path):
    need('onnx', reason='the export needs onnx and onnxruntime (fastmask[onnx])')
    out = tmp_path / 'space'
    r = runner.invoke(cli, ['app', str(run_dir), '--export', str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ['README.md', 'app.py', 'model.onnx', 'model.onnx.json', 'portable.py',
                                                     'render.py', 'requirements.txt', 'space.json']
    assert 'sdk: gradio' in (out / 'README.md').read_text()
    again = runner.invoke(cli, ['app', str(run_dir), '--export', str(out)])
    assert again.exit_code == 1 and 'already exists' in again.output and ONE_LINE(again.output.strip())
    t0 = time.perf_counter()
    py = _clean_venv(tmp_path / 'venv')
    print(f'clean venv with {", ".join(SPACE_PACKAGES)}: {time.perf_counter() - t0:.1f} s')
    found = subprocess.run([str(py), '-c', 'import importlib.util as u; print([m for m in ("torch", "fastai", "fastmask", '
                            '"onnxruntime", "gradio") if u.find_spec(m)])'], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert found.stdout.strip() == "['onnxruntime', 'gradio']", found.stderr
    bad = bad_uploads(photo, tmp_path)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', GRADIO_TEMP_DIR=str(tmp_path / 'gradio'))
    r = subprocess.run([str(py), str(out / 'app.py'), '--predict', str(photo), str(bad['text'])], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    sub = tmp_path / 'sub.csv'
    assert runner.invoke(cli, ['predict', str(run_dir), '--data', str(tiny_demo), '--out', str(sub)]).exit_code == 0
    ans = int(pd.read_csv(sub).set_index('ImageID').loc[photo.name, 'ans'])
    ref18, ref = predict_paths(run_dir, [photo])[0], run_probs(run_dir, [photo])
    face = lines[0]['faces'][0]
    assert face['cls'] == ans == int(ref18.argmax()) and face['p'] == pytest.approx(float(ref18.max()), abs=1e-4)
    for t in ('mask', 'gender', 'age'): np.testing.assert_allclose(face['tasks'][t], ref[t][0], rtol=0, atol=1e-4)
    assert lines[1] == {'path': str(bad['text']), 'error': 'notes.txt: not an image (no image format recognised in its 12 bytes)'}
    # the page itself, served by the clean environment: up on 127.0.0.1, then stopped
    from fastmask.app.browser import free_port
    port = free_port()
    server = subprocess.Popen([str(py), str(out / 'app.py'), '--port', str(port)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        html, end = '', time.monotonic() + 120
        while time.monotonic() < end and server.poll() is None:
            try: html = urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=5).read().decode(); break
            except OSError: time.sleep(0.5)
        assert 'gradio' in html.lower(), server.stdout.read() if server.poll() is not None else 'no page within 120 s'
        from gradio_client import Client, handle_file
        got = Client(f'http://127.0.0.1:{port}/', verbose=False, analytics_enabled=False, download_files=str(tmp_path / 'dl')).predict(handle_file(str(photo)), api_name='/answer')
        served = got[-1]['faces'][0]
        assert served['cls'] == ans and served['p'] == pytest.approx(face['p'], abs=1e-6)
    finally:
        server.terminate()
        try: server.wait(timeout=20)
        except subprocess.TimeoutExpired: server.kill()
