"""Files: atomic writes (every file fastmask writes appears complete or not at all) and the cache folder."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ['atomic_path', 'atomic_dir', 'nonempty', 'write_text', 'write_bytes', 'write_json', 'write_csv', 'save_torch',
           'save_npy', 'read_json', 'cache_root']


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@contextmanager
def atomic_path(path, suffix=''):
    "Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=f'.tmp{suffix}', dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def nonempty(path) -> bool:
    "Whether `path` is a file or a folder with something in it."
    path = Path(path)
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


@contextmanager
def atomic_dir(path, what: str = 'folder', replace: bool = False):
    """Yield a temporary folder beside `path`; rename it onto `path` (absent or empty) only if the block succeeds.

    With `replace`, an existing `path` is replaced as a whole (moved aside, then removed once the new one is in place)."""
    path = Path(path)
    exists = FileExistsError(f"{what} '{path}' already exists and is not empty")
    if nonempty(path) and not replace: raise exists
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    old = tmp.with_suffix('.old')
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if replace and path.exists(): os.replace(path, old)
        try: os.replace(tmp, path)  # onto an empty folder too; a non-empty one means another writer won
        except OSError as e:
            if old.exists(): os.replace(old, path)
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR): raise
            raise exists from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_text(path, text: str) -> Path:
    "Write text atomically."
    with atomic_path(path) as tmp: tmp.write_text(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    "Write bytes atomically."
    with atomic_path(path) as tmp: tmp.write_bytes(data)
    return Path(path)


def write_json(path, obj) -> Path:
    "Write JSON (indented, sorted keys) atomically."
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + '\n')


def read_json(path) -> dict:
    "Read a JSON file."
    return json.loads(Path(path).read_text())


def write_csv(path, df, **kwargs) -> Path:
    "Write a DataFrame as CSV atomically (no index unless asked)."
    kwargs.setdefault('index', False)
    with atomic_path(path, '.csv') as tmp: df.to_csv(tmp, **kwargs)
    return Path(path)


def save_torch(path, obj) -> Path:
    "torch.save atomically."
    import torch
    with atomic_path(path) as tmp: torch.save(obj, tmp)
    return Path(path)


def save_npy(path, arr) -> Path:
    "numpy.save atomically (to exactly `path`)."
    import numpy as np
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f: np.save(f, arr)
    return Path(path)


def cache_root() -> Path:
    "The cache folder: `$FASTMASK_CACHE` if set, else `~/.cache/fastmask` (created)."
    p = Path(os.environ.get('FASTMASK_CACHE') or Path.home() / '.cache' / 'fastmask').expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p
