"""Decode checks of image files (zero-byte, truncated, not an image...), remembered in the fastmask cache."""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from fastmask.io import cache_root, read_json, write_json

__all__ = ['check_image', 'check_images']


def check_image(path) -> tuple[str | None, str | None, str | None]:
    "(sha1 of the bytes, problem kind, reason) of one image file; kind and reason are None when it loads."
    try: data = Path(path).read_bytes()
    except OSError as e: return None, 'unreadable', f'cannot read file ({e.strerror or e})'
    if not data: return None, 'empty', 'zero-byte file'
    sha = hashlib.sha1(data).hexdigest()
    old, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            ImageOps.exif_transpose(im).convert('RGB')  # what augment.FaceImage does
    except UnidentifiedImageError: return sha, 'not-image', 'not an image (no image format recognised)'
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if 'truncated' in msg.lower(): return sha, 'truncated', f'truncated image ({msg})'
        return sha, 'unreadable', f'unreadable image ({msg})'
    finally: ImageFile.LOAD_TRUNCATED_IMAGES = old
    return sha, None, None


def _cache_file(root: Path) -> Path:
    return cache_root() / 'check' / (hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:16] + '.json')


def check_images(paths, root: Path, cache: bool = True, workers: int | None = None) -> dict[str, tuple]:
    "`check_image` of many files in threads, remembered by (size, mtime) in the fastmask cache (one file per `root`)."
    paths = [Path(p) for p in paths]
    cf = _cache_file(root) if cache else None
    known = {}
    if cf is not None and cf.is_file():
        try: known = read_json(cf)
        except (OSError, ValueError): known = {}
    out, todo = {}, []
    for p in paths:
        try: st = p.stat()
        except OSError: st = None
        key = str(p)
        stamp = [st.st_size, st.st_mtime_ns] if st else None
        if stamp and key in known and known[key][:2] == stamp: out[key] = tuple(known[key][2:])
        else: todo.append((key, stamp))
    if todo:
        n = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(n) as ex: res = list(ex.map(lambda kp: check_image(kp[0]), todo))
        for (key, stamp), r in zip(todo, res):
            out[key] = r
            if stamp: known[key] = [*stamp, *r]
        if cf is not None:
            try: write_json(cf, known)
            except OSError: pass
    return out
