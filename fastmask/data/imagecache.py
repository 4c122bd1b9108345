"""Decoded-image cache: every image decoded, centre-cropped and resized once into a memory-mapped uint8 array."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fastmask.data.augment import REPORT_CROP, crop_box
from fastmask.errors import LayoutError
from fastmask.io import write_json

__all__ = ['CACHE_VERSION', 'RESIZE', 'ImageCache', 'decode_image', 'cache_key', 'cache_dir', 'build_cache',
           'cached_images', 'cache_entries', 'cache_size', 'clear_cache', 'human_bytes']

CACHE_VERSION = 1
RESIZE = 'pil-bilinear-squish'   # the resize method baked into the key
_OPEN: dict[str, 'ImageCache'] = {}


def cache_dir(root=None) -> Path:
    "The folder of image caches: `root` or `cache_root()/images` (`$FASTMASK_CACHE`)."
    if root is None:
        from fastmask.io import cache_root
        root = cache_root() / 'images'
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def decode_image(path, size: int, crop: float = REPORT_CROP) -> np.ndarray:
    "One image as (size, size, 3) uint8: EXIF transpose, RGB, centre crop of side `crop`*width, bilinear squish."
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert('RGB')
        if crop: im = im.crop(crop_box(*im.size, crop))
        return np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _stat(p: str) -> tuple[str, int, int]:
    try: st = os.stat(p)
    except OSError: raise LayoutError(f'{p}: image file not found') from None
    return p, st.st_size, st.st_mtime_ns


def cache_key(paths, size: int, crop: float = REPORT_CROP) -> str:
    "Hash of the sorted (path, bytes, mtime_ns) list, crop, size, resize method and cache version."
    h = hashlib.sha1(json.dumps([CACHE_VERSION, RESIZE, int(size), round(float(crop or 0), 6)]).encode())
    for p in sorted(set(map(str, paths))): h.update(repr(_stat(p)).encode())
    return f's{int(size)}-{h.hexdigest()[:20]}'


@dataclass
class ImageCache:
    "A built cache: the memory-mapped (N, size, size, 3) uint8 array and the path -> row index."
    file: Path
    paths: list
    size: int
    crop: float
    bad: list = field(default_factory=list)

    def __post_init__(self):
        self.index = {p: i for i, p in enumerate(self.paths)}
        self.array = np.load(self.file, mmap_mode='r')

    def __len__(self): return len(self.paths)

    @property
    def nbytes(self) -> int:
        "Size of the cache file on disk, in bytes."
        return self.file.stat().st_size

    def rows(self, paths) -> np.ndarray:
        "Row of each path; a LayoutError names a path the cache does not hold."
        try: return np.array([self.index[str(p)] for p in paths], dtype=np.int64)
        except KeyError as e:
            why = 'was skipped as unreadable' if e.args[0] in self.bad else 'is not in the image cache'
            raise LayoutError(f'{e.args[0]}: {why}') from None

    def __getitem__(self, path) -> np.ndarray: return self.array[self.index[str(path)]]


def _try_decode(args):
    p, size, crop = args
    try: return decode_image(p, size, crop)
    except Exception as e: return f'{type(e).__name__}: {e}'.splitlines()[0][:120]


def _bad_message(bad: list[tuple[str, str]]) -> str:
    shown = '; '.join(f'{p} ({why})' for p, why in bad[:3])
    more = f' and {len(bad) - 3} more' if len(bad) > 3 else ''
    return f'{len(bad)} unreadable image(s): {shown}{more}'


def _load(file: Path, meta: Path) -> ImageCache | None:
    "The cache at `file` if both it and its index exist and agree."
    if str(file) in _OPEN: return _OPEN[str(file)]
    if not (file.exists() and meta.exists()): return None
    try:
        m = json.loads(meta.read_text())
        c = ImageCache(file, m['paths'], m['size'], m['crop'], m.get('bad', []))
        if c.array.shape != (len(c.paths), c.size, c.size, 3): return None
    except (ValueError, KeyError, OSError): return None
    _OPEN[str(file)] = c
    return c


def build_cache(paths, size: int, crop: float = REPORT_CROP, skip_bad: bool = False, workers: int | None = None,
                root=None, verbose: bool = False) -> ImageCache:
    "The cache of `paths` at `size`/`crop`, built (in parallel threads, written atomically) unless it already exists."
    paths = sorted(set(map(str, paths)))
    d = cache_dir(root)
    key = cache_key(paths, size, crop)
    file, meta = d / f'{key}.npy', d / f'{key}.json'
    c = _load(file, meta)
    if c is not None:
        if c.bad and not skip_bad: raise LayoutError(_bad_message([(p, 'unreadable') for p in c.bad]))
        return c
    workers = workers or min(8, os.cpu_count() or 1)
    fd, tmp = tempfile.mkstemp(prefix=f'.{key}.', suffix='.tmp.npy', dir=d)
    os.close(fd)
    try:
        arr = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.uint8, shape=(len(paths), size, size, 3))
        good, bad = [], []
        with ThreadPoolExecutor(workers) as ex:
            for p, r in zip(paths, ex.map(_try_decode, [(p, size, crop) for p in paths], chunksize=16)):
                if isinstance(r, str): bad.append((p, r))
                else:
                    arr[len(good)] = r
                    good.append(p)
        if bad and not skip_bad: raise LayoutError(_bad_message(bad))
        arr.flush()
        del arr
        if bad:  # shrink to the readable rows
            full = np.load(tmp, mmap_mode='r')
            fd2, tmp2 = tempfile.mkstemp(prefix=f'.{key}.', suffix='.tmp.npy', dir=d)
            os.close(fd2)
            np.save(tmp2, full[:len(good)])
            del full
            os.replace(tmp2, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)
    finally: Path(tmp).unlink(missing_ok=True)
    write_json(meta, dict(paths=good, size=int(size), crop=float(crop or 0), bad=[p for p, _ in bad],
                          version=CACHE_VERSION, resize=RESIZE))
    c = _load(file, meta)
    if verbose: print(f'image cache {file.name}: {len(c)} images, {human_bytes(c.nbytes)}')
    return c


def cached_images(paths, size: int, crop: float = REPORT_CROP, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    "(memory-mapped array, row of each path in order) for `paths`, building the cache on first use."
    paths = [str(p) for p in paths]
    c = build_cache(paths, size, crop, **kwargs)
    return c.array, c.rows(paths)


def cache_entries(root=None) -> list[dict]:
    "Each cache in the folder: key, images, size, crop, bytes."
    out = []
    for meta in sorted(cache_dir(root).glob('*.json')):
        f = meta.with_suffix('.npy')
        if not f.exists(): continue
        try: m = json.loads(meta.read_text())
        except ValueError: continue
        out.append(dict(key=meta.stem, images=len(m['paths']), size=m['size'], crop=m['crop'], bad=len(m.get('bad', [])),
                        bytes=f.stat().st_size))
    return out


def cache_size(root=None) -> int:
    "Total bytes of the image caches."
    return sum(e['bytes'] for e in cache_entries(root))


def clear_cache(root=None) -> int:
    "Delete every image cache; return the bytes freed."
    n = cache_size(root)
    for f in cache_dir(root).glob('*.npy'): f.unlink(missing_ok=True)
    for f in cache_dir(root).glob('*.json'): f.unlink(missing_ok=True)
    _OPEN.clear()
    return n


def human_bytes(n: int) -> str:
    "1234567 -> '1.2 MB'."
    for unit in ('B', 'kB', 'MB', 'GB'):
        if n < 1000: return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1000
    return f'{n:.1f} TB'
