"""Two processes on the CPU (gloo backend, torchrun): DDP trains, samplers partition the people, rank 0 writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastmask.callbacks.distributed import is_distributed, launch_command, main_dir, rank0_run_dir, world_size

SCRIPT = r'''
import json, sys
import fastmask.callbacks.distributed as D
from fastmask.recipes.registry import resolve
from fastmask.runners.run import run_recipe
draws, orig = [], D.FastmaskDistributedDL.get_idxs
def get_idxs(self):
    idxs = orig(self)
    if self.dl.shuffle:
        items = self.dataset.items                         # rows, or row numbers of the cached-image path
        row = lambda i: TRAIN.iloc[int(items[i])] if isinstance(items, list) else items.iloc[i]
        draws.append(dict(idxs=[int(i) for i in idxs], n=self.n, n_padded=self.n_padded,
                          persons=[str(row(i)['person']) for i in idxs]))
    return idxs
D.FastmaskDistributedDL.get_idxs = get_idxs
data, out, logdir = sys.argv[1:4]
from fastmask.sources.open import open_data
TRAIN = open_data(data).train.reset_index(drop=True)
r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=1, bs=8, tasks=('mask',))
run = run_recipe(r, data, out, num_workers=0)
json.dump(dict(rank=D.rank(), world=D.world_size(), run=str(run), draws=draws), open(f'{logdir}/rank{D.rank()}.json', 'w'))
'''


def test_single_process_defaults(tmp_path):
    assert not is_distributed() and world_size() == 1
    assert rank0_run_dir(lambda p: Path(p), tmp_path) == tmp_path     # no process group: just makes the folder
    assert main_dir(tmp_path / 'a') == tmp_path / 'a'
    cmd = launch_command(['recipe', 'x', '--quick'], 4)
    assert cmd[1:3] == ['-m', 'torch.distributed.run'] and '--nproc_per_node=4' in cmd
    assert cmd[-5:] == ['-m', 'fastmask', 'recipe', 'x', '--quick']


@pytest.fixture(scope='module')
def two_process_run(tiny_demo, tmp_path_factory):
    "Train the mask task of a quick recipe with two CPU processes under torchrun."
    d = tmp_path_factory.mktemp('ddp')
    (d / 'script.py').write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--standalone',
           str(d / 'script.py'), str(tiny_demo), str(d / 'runs'), str(d)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return d, [json.loads((d / f'rank{r}.json').read_text()) for r in (0, 1)]


def test_ddp_run_folder_written_once(two_process_run):
    d, (r0, r1) = two_process_run
    runs = [p for p in (d / 'runs').glob('*/*') if p.is_dir()]
    assert len(runs) == 1 and str(runs[0]) == r0['run']                 # one run folder, rank 0's
    assert r0['world'] == r1['world'] == 2 and r1['run'] != r0['run']
    assert not Path(r1['run']).exists()                                  # rank 1's scratch folder is gone
    for f in ('config.json', 'summary.json', 'model_mask.pth', 'metrics_mask.csv', 'valid_preds.csv'):
        assert (runs[0] / f).exists(), f
    assert len(pd.read_csv(runs[0] / 'metrics_mask.csv')) == 1           # one epoch logged once, not per rank


def test_ddp_samplers_partition_the_people(two_process_run):
    _, (r0, r1) = two_process_run
    assert len(r0['draws']) == len(r1['draws']) >= 1
    for a, b in zip(r0['draws'], r1['draws']):
        n, pad = a['n'], a['n_padded']
        both = a['idxs'] + b['idxs']
        assert len(both) == pad and len(a['idxs']) == len(b['idxs'])
        assert len(set(both[:n])) == n                                   # the draw, split over ranks, no repeats
        assert len(set(a['idxs']) & set(b['idxs'])) <= pad - n             # overlap only from padding
        counts = pd.Series(a['persons'] + b['persons'])[:n].value_counts()
        assert (counts == 3).all()                                       # each person: 1 mask + incorrect + normal


def test_ddp_metrics_match_single_process_evaluation(two_process_run):
    "The gathered validation metrics equal a one-process evaluation of the saved model on the validation set."
    import torch
    from sklearn.metrics import f1_score
    from fastmask.inference.predict import model_probs, load_task_model
    d, (r0, _) = two_process_run
    run = Path(r0['run'])
    vf = pd.read_csv(run / 'valid_preds.csv')
    model, meta = load_task_model(run / 'model_mask.pth')
    p = model_probs(model, meta, vf['path'], 64, 0)
    assert (p.argmax(1) == vf['pred_mask'].to_numpy()).all()
    log = pd.read_csv(run / 'metrics_mask.csv').iloc[-1]
    assert log['f1_score'] == pytest.approx(f1_score(vf['mask'], p.argmax(1), average='macro'), abs=1e-6)
    loss = torch.nn.functional.nll_loss(torch.log(torch.tensor(p)), torch.tensor(vf['mask'].to_numpy())).item()
    assert log['valid_loss'] == pytest.approx(loss, rel=0.05)


def test_gpus_flag_relaunches_under_torchrun(monkeypatch):
    import fastmask.callbacks.distributed as D
    calls = []
    monkeypatch.setattr(D, 'launch', lambda argv, n: calls.append((argv, n)) or 0)
    assert D.gpus_relaunch(None, ['recipe', 'x']) is None and D.gpus_relaunch(1, ['recipe', 'x']) is None
    assert D.gpus_relaunch(4, ['recipe', 'x', '--gpus', '4', '--quick']) == 0
    assert D.gpus_relaunch(2, ['recipe', 'x', '--gpus=2']) == 0
    assert calls == [(['recipe', 'x', '--quick'], 4), (['recipe', 'x'], 2)]
    monkeypatch.setattr(D, 'launch', lambda argv, n: 3)
    with pytest.raises(SystemExit): D.gpus_relaunch(2, ['recipe', 'x'])


@pytest.mark.slow
def test_torchrun_frozen_bn_probe_recipe_end_to_end(tiny_demo, tmp_path):
    """Two CPU processes train cpu_split_lite0 (probe head, frozen BatchNorm under DDP): it finishes, model files hold
    bare keys. The tiny demo (its 36 drawn photos: 2 batches of 8 a rank) keeps it near 20 s; 'demo' takes 90."""
    import torch
    argv = ['recipe', 'cpu_split_lite0', '--data', str(tiny_demo), '--quick', '--tasks', 'gender', '--epochs', '2',
            '--size', '32', '--bs', '8', '--out', str(tmp_path / 'runs')]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    res = subprocess.run(launch_command(argv, 2), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    runs = [p for p in (tmp_path / 'runs').glob('*/*') if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / 'summary.json').is_file(), res.stderr[-3000:]
    assert json.loads((runs[0] / 'summary.json').read_text())['status'] == 'finished'
    sd = torch.load(runs[0] / 'model_gender.pth', map_location='cpu', weights_only=False)['state_dict']
    assert sd and not any(k.startswith('module.') for k in sd)
    assert not list(runs[0].glob('checkpoint_*.pth'))


def test_accelerate_launch_mixed_precision_never_wraps_the_model(monkeypatch):
    "`accelerate launch` with fp16 configured must not autocast the forward without loss scaling: the runtime decides."
    from fastmask.callbacks.distributed import FastmaskDistributedTrainer
    monkeypatch.setenv('ACCELERATE_MIXED_PRECISION', 'fp16')
    t = FastmaskDistributedTrainer()
    assert t.accelerator.mixed_precision == 'no' and not t.accelerator.native_amp


STOPPING = r'''
import sys
from fastai.callback.core import Callback
from fastmask.callbacks.checkpoint import CheckpointCallback
from fastmask.recipes.registry import resolve
from fastmask.runners.run import run_recipe
class Stop(Callback):
    "Interrupt every rank after epoch 1 was checkpointed (what Ctrl-C or SIGTERM does)."
    order = CheckpointCallback.order + 1
    def after_epoch(self):
        if self.epoch == 1: raise KeyboardInterrupt
data, out, stop = sys.argv[1:4]
r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=3, bs=8, tasks=('mask',))
run_recipe(r, data, out, num_workers=0, cbs=(Stop(),) if stop == '1' else ())
'''


@pytest.mark.slow
def test_ddp_run_killed_then_resumed_by_torchrun_or_one_process(tiny_demo, tmp_path):
    """A two-process run interrupted after epoch 2 of 3 continues under torchrun (`fastmask resume`, two processes)
    with the same epochs as an uninterrupted two-process run, and in a single process to a finished run."""
    import shutil
    (tmp_path / 'stop.py').write_text(STOPPING)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    def torchrun(*args, ok=True):
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--standalone', *map(str, args)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert (res.returncode == 0) == ok, res.stdout[-2000:] + res.stderr[-3000:]
        return res
    torchrun(tmp_path / 'stop.py', tiny_demo, tmp_path / 'whole', 0)
    torchrun(tmp_path / 'stop.py', tiny_demo, tmp_path / 'cut', 1, ok=False)
    whole, = (tmp_path / 'whole').glob('*/*')
    cut, = (tmp_path / 'cut').glob('*/*')
    assert (cut / 'checkpoint_mask.pth').is_file() and not (cut / 'summary.json').exists()
    assert len(pd.read_csv(cut / 'metrics_mask.csv')) == 2
    single = tmp_path / 'single'
    shutil.copytree(cut, single)
    torchrun('-m', 'fastmask', 'resume', cut, '--workers', '0')
    done = lambda d: pd.read_csv(d / 'metrics_mask.csv').drop(columns='time')
    assert json.loads((cut / 'summary.json').read_text())['status'] == 'finished'
    pd.testing.assert_frame_equal(done(cut), done(whole), atol=1e-4)      # as if never interrupted
    a, b = (json.loads((d / 'summary.json').read_text()) for d in (cut, whole))
    assert a['valid_f1_mask'] == pytest.approx(b['valid_f1_mask'], abs=1e-4)
    res = subprocess.run([sys.executable, '-m', 'fastmask', 'resume', str(single), '--workers', '0'], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((single / 'summary.json').read_text())['status'] == 'finished' and len(done(single)) == 3
    assert not list(single.glob('checkpoint_*.pth')) and not list(cut.glob('checkpoint_*.pth'))


@pytest.mark.slow
def test_torchrun_swa_recipe_end_to_end(tiny_demo, tmp_path):
    "Two CPU processes average the last epochs (SWA) and recompute BatchNorm statistics through the DDP wrapper."
    import torch
    argv = ['recipe', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--quick', '--tasks', 'mask', '--epochs', '3',
            '--size', '32', '--bs', '8', '--set', 'swa_start=1', '--set', 'swa_lr=1e-3', '--out', str(tmp_path / 'runs')]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    res = subprocess.run(launch_command(argv, 2), env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    run, = (tmp_path / 'runs' / 'baseline_mobilenetv2').iterdir()
    log = pd.read_csv(run / 'metrics_mask.csv')
    assert str(log['epoch'].iloc[-1]) == 'swa' and len(log) == 4          # three epochs, then the averaged model
    sd = torch.load(run / 'model_mask.pth', map_location='cpu', weights_only=False)['state_dict']
    assert not any(k.startswith('module.') for k in sd) and 'n_averaged' not in ' '.join(sd)
