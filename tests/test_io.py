"""Atomic writes: a crash mid-write (exception, failed rename) leaves the previous file intact and no temporaries."""
import os

import numpy as np
import pandas as pd
import pytest

from fastmask import io


def _leftovers(d): return [p.name for p in d.iterdir() if p.name.startswith('.')]


@pytest.mark.parametrize('write', [lambda p: io.write_text(p, 'new'), lambda p: io.write_json(p, {'a': 2}),
                                   lambda p: io.write_csv(p, pd.DataFrame({'a': [2]})),
                                   lambda p: io.save_torch(p, {'a': 2}), lambda p: io.save_npy(p, np.arange(3)),
                                   lambda p: io.write_bytes(p, b'new')])
def test_failed_rename_keeps_old_file(tmp_path, monkeypatch, write):
    f = tmp_path / 'out.dat'
    f.write_text('old')
    def boom(*a, **k): raise OSError('disk gone')
    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(OSError): write(f)
    assert f.read_text() == 'old' and _leftovers(tmp_path) == []
    monkeypatch.undo()
    write(f)
    assert f.read_bytes() != b'old' and _leftovers(tmp_path) == []


def test_exception_mid_write_keeps_old_file(tmp_path):
    f = tmp_path / 'sub' / 'x.txt'
    io.write_text(f, 'old')
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(f) as tmp:
            tmp.write_text('half')
            raise KeyboardInterrupt
    assert f.read_text() == 'old' and _leftovers(f.parent) == []


def test_written_files_have_normal_permissions(tmp_path):
    f = io.write_text(tmp_path / 'p.txt', 'x')
    umask = os.umask(0); os.umask(umask)
    assert f.stat().st_mode & 0o777 == 0o666 & ~umask
    assert io.read_json(io.write_json(tmp_path / 'j.json', {'b': [1, 2]})) == {'b': [1, 2]}
    assert np.load(io.save_npy(tmp_path / 'a.npy', np.arange(4))).tolist() == [0, 1, 2, 3]


def test_atomic_dir(tmp_path):
    d = tmp_path / 'ds'
    with pytest.raises(RuntimeError):
        with io.atomic_dir(d) as tmp:
            (tmp / 'half.txt').write_text('x')
            raise RuntimeError('crash')
    assert not d.exists() and _leftovers(tmp_path) == []
    with io.atomic_dir(d) as tmp: (tmp / 'full.txt').write_text('x')
    assert (d / 'full.txt').read_text() == 'x' and _leftovers(tmp_path) == []
    with pytest.raises(FileExistsError):
        with io.atomic_dir(d): pass
