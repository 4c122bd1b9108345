"""Decoded-image cache: same pixels as direct decoding, keyed on file changes and size, safe to share, bad files named."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastmask.data.augment import FaceImage, item_tfms
from fastmask.data.imagecache import build_cache, cache_entries, cache_key, cache_size, cached_images, clear_cache, decode_image
from fastmask.errors import LayoutError


@pytest.fixture()
def photos(tmp_path, tiny_demo):
    "Eight demo JPEGs copied to a private folder (so tests may modify them)."
    src = sorted((tiny_demo / 'train' / 'images').rglob('*.jpg'))[:8]
    out = []
    for i, p in enumerate(src):
        q = tmp_path / 'img' / f'{i}_{p.name}'
        q.parent.mkdir(exist_ok=True)
        q.write_bytes(p.read_bytes())
        out.append(q)
    return out


def _fastai_pixels(path, size):
    "The uncached path: fastai's FaceImage + CenterCropFrac + Resize(squish) on the PIL image."
    im = FaceImage.create(path)
    for t in item_tfms(size): im = t(im, split_idx=1)
    return np.asarray(im)


def test_same_pixels_as_direct_decoding(photos, tmp_path):
    c = build_cache(photos, 48, root=tmp_path / 'c')
    assert c.array.shape == (len(photos), 48, 48, 3) and c.array.dtype == np.uint8
    for p in photos:
        diff = np.abs(c[p].astype(int) - _fastai_pixels(p, 48).astype(int))
        assert diff.max() <= 1, f'{p.name}: cached pixels differ from direct decoding by {diff.max()}'
    arr, rows = cached_images(photos[::-1], 48, root=tmp_path / 'c')
    assert np.array_equal(arr[rows[0]], c[photos[-1]])       # rows follow the order asked for


def test_exif_rotation_applied(tmp_path):
    im = Image.new('RGB', (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 20))                          # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6                                               # rotate 90 deg clockwise on display
    p = tmp_path / 'rot.jpg'
    im.save(p, exif=exif, quality=95)
    a = decode_image(p, 16, crop=0)
    assert a[0, :, 2].mean() > 150 and a[-1, :, 2].mean() < 100    # blue on top after the transpose


def test_modified_file_is_redecoded(photos, tmp_path):
    root = tmp_path / 'c'
    c1 = build_cache(photos, 32, root=root)
    k1 = cache_key(photos, 32)
    Image.new('RGB', (384, 512), (0, 255, 0)).save(photos[0])
    os.utime(photos[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cache_key(photos, 32) != k1
    c2 = build_cache(photos, 32, root=root)
    assert c2.file != c1.file
    assert c2[photos[0]][..., 1].mean() > 250 and c2[photos[0]][..., 0].mean() < 5
    assert np.array_equal(c2[photos[1]], c1[photos[1]])


def test_added_file_and_other_size_make_new_caches(photos, tmp_path):
    root = tmp_path / 'c'
    a = build_cache(photos[:4], 32, root=root)
    b = build_cache(photos[:5], 32, root=root)
    c = build_cache(photos[:4], 40, root=root)
    d = build_cache(photos[:4], 32, crop=0.5, root=root)
    assert len({a.file, b.file, c.file, d.file}) == 4
    assert c.array.shape[1:] == (40, 40, 3) and not np.array_equal(a[photos[0]], d[photos[0]])
    assert build_cache(photos[:4], 32, root=root).file == a.file   # reused, not rebuilt
    entries = cache_entries(root)
    assert len(entries) == 4 and cache_size(root) == sum(x.file.stat().st_size for x in (a, b, c, d))
    assert clear_cache(root) > 0 and cache_entries(root) == []


def test_corrupt_image_named(photos, tmp_path):
    bad = photos[2]
    bad.write_bytes(b'not a jpeg at all')
    with pytest.raises(LayoutError, match=bad.name):
        build_cache(photos, 32, root=tmp_path / 'c')
    assert cache_entries(tmp_path / 'c') == []                      # nothing half-built left behind
    c = build_cache(photos, 32, root=tmp_path / 'c', skip_bad=True)
    assert c.bad == [str(bad)] and len(c) == len(photos) - 1
    with pytest.raises(LayoutError, match='skipped'):
        c.rows([bad])


def test_missing_file_named(photos, tmp_path):
    with pytest.raises(LayoutError, match='nope.jpg'):
        build_cache(photos + [tmp_path / 'nope.jpg'], 32, root=tmp_path / 'c')


def test_concurrent_readers_and_builders(photos, tmp_path):
    root = tmp_path / 'c'
    results, errors = [], []

    def work():
        try:
            c = build_cache(photos, 24, root=root)
            results.append(int(np.array(c.array).sum(dtype=np.int64)))
        except Exception as e: errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and len(set(results)) == 1
    file = build_cache(photos, 24, root=root).file
    code = f'import numpy as np; print(int(np.load({str(file)!r}, mmap_mode="r").sum(dtype=np.int64)))'
    procs = [subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [int(p.communicate(timeout=120)[0].split()[-1]) for p in procs]   # other processes read it meanwhile
    assert outs == [int(results[0])] * 2
    assert len(list(Path(root).glob('*.tmp*'))) == 0


def test_cli_lists_and_clears(photos, tmp_path, monkeypatch):
    from typer.testing import CliRunner
    from fastmask.cli import app
    monkeypatch.setenv('FASTMASK_CACHE', str(tmp_path / 'fm'))
    c = build_cache(photos, 16)
    assert c.file.parent == tmp_path / 'fm' / 'images'
    res = CliRunner().invoke(app, ['data', 'cache'])
    assert res.exit_code == 0 and c.file.stem in res.output and '1 cache(s)' in res.output
    res = CliRunner().invoke(app, ['data', 'cache', '--clear'])
    assert res.exit_code == 0 and 'freed' in res.output and not c.file.exists()
