"""Checkpoints and resume: an interrupted fit (exception, SIGKILL) continues to the same metrics; reproducibility."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from fastai.callback.core import Callback

from fastmask.callbacks.checkpoint import CheckpointCallback, RunInterrupted, checkpoint_path, interruptible
from fastmask.runtime import Runtime

from fastmask.runners.run import resume_run
from fastmask.recipes.registry import Recipe
from fastmask.runners.train import build_learner, fit_task
from fastmask.runners.run import run_recipe
from ddp import DDPWrap  # noqa: E402  (tests/ddp.py; the `ddp_group` fixture is in conftest.py)

RT = Runtime(num_workers=0)   # loaders in this process
TINY = Recipe(name='tiny_test', description='test', arch='mobilenetv2_100', pretrained=False, size=32, bs=16,
              epochs=2, lr=3e-3, patience=5)


class Counter(Callback):
    "A stand-in for SWA: a callback whose state (`state_dict`) must survive an interruption."
    order = 55
    def __init__(self): self.n, self.total = 0, 0.0
    def after_epoch(self): self.n, self.total = self.n + 1, self.total + float(self.recorder.values[-1][0])
    def state_dict(self): return dict(n=self.n, total=self.total)
    def load_state_dict(self, sd): self.n, self.total = sd['n'], sd['total']


class Crash(Callback):
    "Interrupt (like Ctrl-C) after the checkpoint of epoch `at`."
    order = CheckpointCallback.order + 1
    def __init__(self, at: int): self.at = at
    def after_epoch(self):
        if self.epoch == self.at: raise KeyboardInterrupt


def _metrics(run_dir: Path, task='all') -> pd.DataFrame:
    return pd.read_csv(run_dir / f'metrics_{task}.csv').drop(columns='time')


def _fit(data, run_dir, *cbs):
    run_dir.mkdir(parents=True, exist_ok=True)
    learn = build_learner(TINY, data, 'all', cbs=[Counter(), *cbs], runtime=RT)
    return fit_task(learn, run_dir)


def test_interrupted_fit_resumes_to_the_same_result(tiny_demo, tmp_path):
    ref = _fit(tiny_demo, tmp_path / 'ref')
    with pytest.raises(KeyboardInterrupt): _fit(tiny_demo, tmp_path / 'cut', Crash(at=0))
    ck = checkpoint_path(tmp_path / 'cut', 'all')
    assert ck.is_file() and not (tmp_path / 'cut' / 'model_all.pth').exists()
    assert torch.load(ck, weights_only=False)['epoch'] == 0
    res = _fit(tiny_demo, tmp_path / 'cut')
    pd.testing.assert_frame_equal(_metrics(tmp_path / 'cut'), _metrics(tmp_path / 'ref'), atol=1e-6, rtol=0)
    assert len(_metrics(tmp_path / 'cut')) == 2 and not ck.exists()
    c_ref, c_res = ref.cbs.filter(lambda c: isinstance(c, Counter))[0], res.cbs.filter(lambda c: isinstance(c, Counter))[0]
    assert c_res.n == c_ref.n == 2 and c_res.total == pytest.approx(c_ref.total, abs=1e-6)
    for a, b in zip(ref.model.state_dict().values(), res.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_swa_state_survives_interruption(tiny_demo, tmp_path):
    r = Recipe(**{**TINY.to_dict(), 'epochs': 3, 'patience': None, 'swa_start': 1, 'schedule': 'constant', 'lr': 1e-3})
    def fit(d, *cbs):
        d.mkdir(parents=True, exist_ok=True)
        return fit_task(build_learner(r, tiny_demo, 'all', cbs=list(cbs), runtime=RT), d)
    ref = fit(tmp_path / 'ref')
    with pytest.raises(KeyboardInterrupt): fit(tmp_path / 'cut', Crash(at=1))  # one epoch already averaged
    ck = torch.load(checkpoint_path(tmp_path / 'cut', 'all'), weights_only=False)
    assert any(k.startswith('SWACallback') and v.get('swa_model') is not None for k, v in ck['callbacks'].items())
    res = fit(tmp_path / 'cut')
    a, b = _metrics(tmp_path / 'ref'), _metrics(tmp_path / 'cut')
    assert list(a['epoch'].astype(str)) == list(b['epoch'].astype(str)) and 'swa' in set(a['epoch'].astype(str))
    pd.testing.assert_frame_equal(a, b, atol=1e-6, rtol=0)
    for x, y in zip(ref.model.state_dict().values(), res.model.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), atol=1e-6)


def test_same_seed_same_metrics(tiny_demo, tmp_path):
    r = Recipe(**{**TINY.to_dict(), 'epochs': 1, 'patience': None})
    a = run_recipe(r, tiny_demo, tmp_path / 'a', num_workers=0)
    b = run_recipe(r, tiny_demo, tmp_path / 'b', num_workers=0)
    pd.testing.assert_frame_equal(_metrics(a), _metrics(b), atol=1e-6, rtol=0)
    pa, pb = pd.read_csv(a / 'valid_preds.csv'), pd.read_csv(b / 'valid_preds.csv')
    pd.testing.assert_frame_equal(pa, pb)
    import json
    ca, cb = (json.loads((d / 'config.json').read_text()) for d in (a, b))
    assert ca['data_fingerprint'] == cb['data_fingerprint'] and len(ca['data_fingerprint']) == 64
    assert Recipe.from_dict(ca['recipe']) == r and ca['versions']['torch'] and ca['fix_labels'] is False


def test_resume_skips_finished_tasks(tiny_demo, tmp_path, monkeypatch):
    import fastmask.runners.train as train
    r = Recipe(**{**TINY.to_dict(), 'epochs': 1, 'patience': None, 'tasks': ('mask', 'gender')})
    orig = train.task_callbacks
    monkeypatch.setattr(train, 'task_callbacks', lambda r, task, d, **kw: orig(r, task, d, **kw) + ([Crash(0)] if task == 'gender' else []))
    with pytest.raises(RunInterrupted, match="fastmask resume"): run_recipe(r, tiny_demo, tmp_path, num_workers=0)
    run_dir = next((tmp_path / 'tiny_test').iterdir())
    mask = (run_dir / 'model_mask.pth').read_bytes()
    assert checkpoint_path(run_dir, 'gender').is_file() and not (run_dir / 'summary.json').exists()
    monkeypatch.setattr(train, 'task_callbacks', orig)
    resume_run(run_dir)
    assert (run_dir / 'model_mask.pth').read_bytes() == mask and (run_dir / 'model_gender.pth').is_file()
    summary = pd.read_json(run_dir / 'summary.json', typ='series')
    assert summary['status'] == 'finished' and summary['epochs'] == {'mask': 1, 'gender': 1}
    from fastmask.errors import FastmaskError
    with pytest.raises(FastmaskError, match='already finished'): resume_run(run_dir)


def test_sigterm_becomes_resume_message(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as e:
        with interruptible(tmp_path):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert f"fastmask resume {tmp_path}" in str(e.value)
    assert signal.getsignal(signal.SIGTERM) is before  # the run's handler is gone, the previous one is back


def _cli(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-m', 'fastmask', *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_sigkill_then_resume_matches_uninterrupted(tiny_demo, tmp_path):
    args = ['recipe', 'baseline_mobilenetv2', '--data', tiny_demo, '--size', 32, '--bs', 16, '--epochs', 3,
            '--no-pretrained', '--workers', 0]
    ref = _cli(*args, '--out', tmp_path / 'ref')
    cut = _cli(*args, '--out', tmp_path / 'cut')
    try: _kill_resume_compare(ref, cut, tmp_path)
    finally:
        for p in (ref, cut):
            if p.poll() is None: p.kill()
            p.communicate()


def _kill_resume_compare(ref, cut, tmp_path):
    t0 = time.time()
    while not list((tmp_path / 'cut').glob('*/*/checkpoint_all.pth')):
        assert cut.poll() is None, cut.communicate()
        assert time.time() - t0 < 240, 'no checkpoint after 240 s'
        time.sleep(0.02)
    cut.send_signal(signal.SIGKILL)
    cut.wait()
    run_dir = next((tmp_path / 'cut').glob('*/*'))
    assert not (run_dir / 'summary.json').exists() and not (run_dir / 'model_all.pth').exists(), 'the run ended before the kill'
    res = _cli('resume', run_dir)
    out, err = res.communicate(timeout=300)
    assert res.returncode == 0 and 'Traceback' not in err, err
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    ref_dir = next((tmp_path / 'ref').glob('*/*'))
    pd.testing.assert_frame_equal(_metrics(run_dir), _metrics(ref_dir), atol=1e-6, rtol=0)
    a, b = (pd.read_json(d / 'summary.json', typ='series').drop(['wall_time_s']) for d in (ref_dir, run_dir))
    pd.testing.assert_series_equal(a, b)
    assert (ref_dir / 'submission.csv').read_text() == (run_dir / 'submission.csv').read_text()


# --- CUDA and multi-process paths, checked on the CPU: a stand-in device, a fake CUDA, a one-process gloo group ---

import random

import numpy as np
from torch import nn
from torch.utils.data import TensorDataset
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import set_seed

from fastmask.callbacks.checkpoint import rng_states, set_rng_states


def _small(fname, *cbs) -> Learner:
    "A small BatchNorm model on random data with a checkpoint at `fname`."
    set_seed(0)
    x = torch.randn(64, 5)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    dls = DataLoaders.from_dsets(ds, ds, bs=16, device='cpu', num_workers=0)   # no fork beside a gloo group's threads
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), cbs=[CheckpointCallback(fname), *cbs])


def _small_fit(learn, epochs=2):
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-2)
    return learn


class _FakeCuda:
    "Stands in for `torch.cuda` on a machine with `n` GPUs: `set_rng_state` checks what the real one checks."
    def __init__(self, monkeypatch, n: int, current: int = 0, states=None):
        self.n, self.set = n, {}
        for k, v in dict(is_available=lambda: True, device_count=lambda: n, current_device=lambda: current,
                         get_rng_state_all=lambda: list(states), set_rng_state=self.set_rng_state,
                         set_rng_state_all=lambda ts: [self.set_rng_state(t, i) for i, t in enumerate(ts)]).items():
            monkeypatch.setattr(torch.cuda, k, v)
    def set_rng_state(self, t, device=0):
        if device >= self.n: raise RuntimeError('CUDA error: invalid device ordinal')
        if t.device.type != 'cpu' or t.dtype != torch.uint8: raise TypeError('RNG state must be a torch.ByteTensor')
        self.set[device] = t.clone()


def test_rng_states_restore_from_a_checkpoint_loaded_onto_the_model_device(tmp_path):
    "Resume loads the checkpoint onto the model's device (CUDA on a GPU, 'meta' here): torch's RNG state must stay usable."
    with pytest.raises(KeyboardInterrupt): _small_fit(_small(tmp_path / 'ck.pth', Crash(at=0)))
    saved = torch.load(tmp_path / 'ck.pth', weights_only=False)['rng']
    ck = torch.load(tmp_path / 'ck.pth', map_location=torch.device('meta'), weights_only=False)   # as `before_fit` maps it
    torch.manual_seed(123)
    set_rng_states(ck['rng'])
    assert torch.equal(torch.get_rng_state(), torch.as_tensor(saved['torch']))


def test_cuda_rng_states_from_a_machine_with_more_gpus(tmp_path, monkeypatch):
    "States of 4 GPUs (saved by the run's rank 2) restore on 1 GPU: device 0 only, as CPU ByteTensors, the saver's stream."
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    cuda = _FakeCuda(monkeypatch, 1)
    set_rng_states(dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(), cuda=states))
    assert list(cuda.set) == [0] and torch.equal(cuda.set[0], states[0])       # an older file: no current device
    _FakeCuda(monkeypatch, 4, current=2, states=states)
    torch.save(rng_states(), tmp_path / 'rng.pth')
    cuda = _FakeCuda(monkeypatch, 1)
    set_rng_states(torch.load(tmp_path / 'rng.pth', map_location=torch.device('meta'), weights_only=False))
    assert list(cuda.set) == [0] and torch.equal(cuda.set[0], states[2])


def test_checkpoint_of_a_ddp_fit_has_no_wrapper_prefix(tmp_path, ddp_group):
    "A DistributedDataParallel fit's checkpoint holds the bare model's keys; a single-process run resumes from it."
    with pytest.raises(KeyboardInterrupt): _small_fit(_small(tmp_path / 'ck.pth', DDPWrap(), Crash(at=0)))
    ck = torch.load(tmp_path / 'ck.pth', weights_only=False)
    ref = _small(tmp_path / 'none.pth').model.state_dict()
    assert list(ck['model']) == list(ref)
    learn = _small_fit(_small(tmp_path / 'ck.pth'))     # no process group needed
    assert learn.checkpoint.start == 1 and len(learn.recorder.values) == 2


def test_checkpoint_with_module_prefixes_still_loads(tmp_path):
    "Files written before the fix hold `module.` keys: resume strips them."
    with pytest.raises(KeyboardInterrupt): _small_fit(_small(tmp_path / 'ck.pth', Crash(at=0)))
    ck = torch.load(tmp_path / 'ck.pth', weights_only=False)
    ck['model'] = {f'module.{k}': v for k, v in ck['model'].items()}
    torch.save(ck, tmp_path / 'ck.pth')
    learn = _small_fit(_small(tmp_path / 'ck.pth'))
    assert learn.checkpoint.start == 1 and len(learn.recorder.values) == 2


def test_only_rank_0_writes_and_every_rank_resumes_from_its_file(tmp_path, monkeypatch):
    "Rank 1 (its run folder a scratch one) writes no checkpoint and resumes from rank 0's."
    import fastmask.callbacks.distributed as D
    main, scratch = tmp_path / 'main', tmp_path / 'scratch'
    main.mkdir(); scratch.mkdir()
    with pytest.raises(KeyboardInterrupt): _small_fit(_small(main / 'ck.pth', Crash(at=0)))   # rank 0's file
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setitem(D._MAIN_DIRS, scratch, main)
    stamp = (main / 'ck.pth').stat().st_mtime_ns
    learn = _small_fit(_small(scratch / 'ck.pth'), epochs=2)
    assert learn.checkpoint.start == 1 and not (scratch / 'ck.pth').exists()
    assert (main / 'ck.pth').stat().st_mtime_ns == stamp
