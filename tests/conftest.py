"""Shared fixtures: tiny demo data sets made once per test session, and an isolated cache."""
import os
import socket
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture(scope='session', autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own fastmask cache folder, no progress bars, and single-threaded torch (here and in
    the subprocesses tests start): on 2 shared cores, loader workers beside multi-threaded torch run several times slower."""
    import torch
    keys = ('FASTMASK_CACHE', 'FASTMASK_PROGRESS', 'OMP_NUM_THREADS')
    old, threads = {k: os.environ.get(k) for k in keys}, torch.get_num_threads()
    os.environ.update(FASTMASK_CACHE=str(tmp_path_factory.mktemp('fastmask-cache')), FASTMASK_PROGRESS='0', OMP_NUM_THREADS='1')
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    for k, v in old.items():
        if v is None: os.environ.pop(k, None)
        else: os.environ[k] = v


@pytest.fixture(scope='session')
def tiny_demo(tmp_path_factory) -> Path:
    "A 16-person demo layout (4 eval persons): for plumbing tests, not for learning."
    from fastmask.sources.demo import make_demo
    return make_demo(tmp_path_factory.mktemp('tiny') / 'demo', persons=16, eval_persons=4, seed=1)


@pytest.fixture(scope='session')
def shared_data() -> Path:
    "The real-face folder beside the project; tests that need it skip where it is absent."
    if not SHARED_DATA.is_dir(): pytest.skip(f'{SHARED_DATA} not present')
    return SHARED_DATA


@pytest.fixture
def ddp_group():
    "A one-process gloo process group, as torchrun's ranks join, destroyed after the test."
    import torch
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()
