"""Tests of the SWA callback: the average of the snapshots, constant SWA rate, fresh BatchNorm statistics, logging."""
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fastai.callback.all import Callback, CSVLogger, EarlyStoppingCallback
from fastai.callback.schedule import fit_one_cycle, lr_find  # noqa: F401  (patch Learner)
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import F1Score, accuracy
from fastai.torch_core import set_seed

from fastmask.callbacks.swa import SWACallback
from ddp import DDPWrap  # noqa: E402  (tests/ddp.py; the `ddp_group` fixture is in conftest.py)


class Snapshots(Callback):
    "Copies of the parameters at the end of every epoch's training phase."
    order = 90
    def before_fit(self): self.snaps = []
    def after_train(self): self.snaps.append([p.detach().clone() for p in self.model.parameters()])


def _learner(n: int = 64, bs: int = 16) -> Learner:
    set_seed(0)
    x = torch.randn(n, 5)
    ds = TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())
    dls = DataLoaders.from_dsets(ds, ds, bs=bs, device='cpu', num_workers=0)  # no fork beside a gloo group's threads
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=[F1Score(average='macro'), accuracy])


def _fit(learn, epochs, cbs, one_cycle=True, lr=1e-2):
    with learn.no_bar(), learn.no_logging():
        (learn.fit_one_cycle if one_cycle else learn.fit)(epochs, lr, cbs=cbs)


@pytest.fixture(scope='module')
def swa_run(tmp_path_factory):
    "Five one-cycle epochs, averaging epochs 2, 3 and 4 at a constant lr of 5e-3."
    learn, snaps = _learner(), Snapshots()
    csv = tmp_path_factory.mktemp('swa') / 'metrics.csv'
    _fit(learn, 5, [SWACallback(start_epoch=2, swa_lr=5e-3), snaps, CSVLogger(fname=str(csv))])
    return learn, snaps.snaps, csv


def test_averaged_weights_are_the_mean_of_the_snapshots(swa_run):
    learn, snaps, _ = swa_run
    final = [p.detach() for p in learn.model.parameters()]
    mean = [torch.stack(s).mean(0) for s in zip(*snaps[2:])]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(final, mean))
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(final, snaps[-1]))  # not the last weights
    wrong = [torch.stack(s).mean(0) for s in zip(*snaps[1:])]
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(final, wrong))  # nor an average of other epochs


def test_constant_swa_rate_overrides_one_cycle(swa_run):
    learn, _, _ = swa_run
    lrs = learn.recorder.lrs
    per_epoch = len(lrs) // 5
    assert all(lr == pytest.approx(5e-3) for lr in lrs[2 * per_epoch:])
    assert not all(lr == pytest.approx(5e-3) for lr in lrs[:2 * per_epoch])


def test_batchnorm_statistics_recomputed_for_the_averaged_weights(swa_run):
    learn, _, _ = swa_run
    x = learn.dls.train.dataset.tensors[0]
    with torch.no_grad(): h = learn.model[0](x)  # what the BatchNorm sees under the averaged weights
    assert torch.allclose(learn.model[1].running_mean, h.mean(0), atol=1e-5)  # mean of equal-sized batch means
    one = _learner(bs=64)  # one batch per epoch: the running variance is that batch's exactly
    _fit(one, 3, [SWACallback(start_epoch=1)])
    with torch.no_grad(): h = one.model[0](x)
    assert torch.allclose(one.model[1].running_var, h.var(0, unbiased=True), atol=1e-5)


def test_final_metrics_are_the_averaged_models(swa_run):
    learn, _, csv = swa_run
    valid_loss, f1, acc = learn.validate()
    m = learn.swa_metrics
    assert m['valid_loss'] == pytest.approx(valid_loss, abs=1e-5)
    assert m['f1_score'] == pytest.approx(f1) and m['accuracy'] == pytest.approx(acc)
    assert m['epochs_averaged'] == [2, 3, 4]
    log = pd.read_csv(csv)
    assert list(log['epoch'].astype(str)) == ['0', '1', '2', '3', '4', 'swa']
    assert float(log.iloc[-1]['valid_loss']) == pytest.approx(valid_loss, abs=1e-5)


def test_early_stopped_fit_still_averages_its_last_epoch():
    learn, snaps = _learner(), Snapshots()
    stop = EarlyStoppingCallback(monitor='valid_loss', patience=0, min_delta=10.0)  # stops after the second epoch
    _fit(learn, 6, [SWACallback(start_epoch=0), stop, snaps], one_cycle=False)
    assert len(snaps.snaps) == 2 and learn.swa_metrics['epochs_averaged'] == [0, 1]
    mean = [torch.stack(s).mean(0) for s in zip(*snaps.snaps)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(learn.model.parameters(), mean))


def test_no_averaging_when_start_is_after_the_last_epoch():
    learn, snaps = _learner(), Snapshots()
    _fit(learn, 2, [SWACallback(start_epoch=5, swa_lr=1.0), snaps])
    assert learn.swa_metrics is None and max(learn.recorder.lrs) < 1.0
    assert all(torch.equal(a, b) for a, b in zip(learn.model.parameters(), snaps.snaps[-1]))


def test_disabled_under_lr_find():
    learn = _learner(n=256, bs=8)
    cb = SWACallback(start_epoch=0, swa_lr=1e-4)
    learn.add_cb(cb)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    with learn.no_bar(), learn.no_logging(): learn.lr_find(num_it=20, show_plot=False)
    assert cb.averaged == [] and learn.swa_metrics is None
    assert max(learn.recorder.lrs) > 1e-4  # lr_find's sweep was not pinned to swa_lr
    assert all(torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))


def test_batchnorm_kept_in_eval_mode_keeps_its_statistics():
    "A BatchNorm frozen while training (FrozenBN, fastai's train_bn=False) keeps the statistics its weights were fitted with."
    class FreezeFirstBN(Callback):
        order = 1  # after TrainEvalCallback put the model in train mode
        def before_train(self): self.model[1].eval()
    learn = _learner()
    learn.model.insert(3, nn.BatchNorm1d(8))                  # a second BatchNorm that trains on batch statistics
    frozen = [learn.model[1].running_mean.clone(), learn.model[1].running_var.clone()]
    _fit(learn, 3, [SWACallback(start_epoch=1), FreezeFirstBN()])
    assert torch.equal(learn.model[1].running_mean, frozen[0]) and torch.equal(learn.model[1].running_var, frozen[1])
    x = learn.dls.train.dataset.tensors[0]
    learn.model.eval()                                        # the frozen one feeds the trained one its eval output
    with torch.no_grad(): h = learn.model[2](learn.model[1](learn.model[0](x)))
    assert torch.allclose(learn.model[3].running_mean, h.mean(0), atol=1e-5)    # the trained one is recomputed


# --- under DistributedDataParallel (a one-process gloo group) and with SyncBatchNorm, on the CPU ---


from torch.nn.parallel import DistributedDataParallel

from fastmask.callbacks.checkpoint import CheckpointCallback


@pytest.mark.parametrize('wrap', ['ddp', 'sync_bn'])
def test_batchnorm_recomputed_under_ddp_and_for_sync_batchnorm(wrap, request, tmp_path):
    "Under DDP (names seen through the wrapper) and for SyncBatchNorm the averaged model gets fresh statistics."
    learn = _learner()
    if wrap == 'ddp': request.getfixturevalue('ddp_group')
    else: learn.model = nn.SyncBatchNorm.convert_sync_batchnorm(learn.model)
    model, bn = learn.model, learn.model[1]
    last = []
    class Last(Callback):
        order = 90
        def after_epoch(self): last[:] = [bn.running_mean.clone(), bn.running_var.clone()]
    ck = CheckpointCallback(tmp_path / 'ck.pth')
    _fit(learn, 3, [SWACallback(start_epoch=1), Last(), ck] + ([DDPWrap()] if wrap == 'ddp' else []))
    assert learn.model is model and learn.swa_metrics['epochs_averaged'] == [1, 2]
    assert not torch.equal(bn.running_mean, last[0]) and not torch.equal(bn.running_var, last[1])   # recomputed
    x = learn.dls.train.dataset.tensors[0]
    with torch.no_grad(): h = model[0](x)
    assert torch.allclose(bn.running_mean, h.mean(0), atol=1e-5)          # for the averaged weights
    state = torch.load(tmp_path / 'ck.pth', weights_only=False)['callbacks']
    swa = next(v for k, v in state.items() if k.startswith('SWACallback'))
    assert swa['trained_bn'] == ['1'] and not isinstance(swa['swa_model'].module, DistributedDataParallel)
