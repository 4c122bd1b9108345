"""Tests of the optimizer registry: each one steps under fit and fit_one_cycle, and takes fastai's lr/mom/wd."""
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.torch_core import set_seed

from fastmask.errors import MissingExtraError, RecipeError
from fastmask.optim import OPTIMIZERS, get_opt
from optional import need

WRAPPED = {'adamp': ('betas', 0), 'madgrad': ('momentum', None)}


def _learner(opt: str, wd: float = 0.0) -> Learner:
    "A linear model on 32 points, one batch per epoch."
    if opt in WRAPPED: need('pytorch_optimizer', reason='AdamP / MADGRAD need the [optim] extra')
    set_seed(0)
    x = torch.randn(32, 4)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    dls = DataLoaders.from_dsets(ds, ds, bs=32, device='cpu')
    return Learner(dls, nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)),
                   loss_func=nn.CrossEntropyLoss(), opt_func=get_opt(opt), wd=wd)


def _loss(learn) -> float:
    learn.model.eval()
    with torch.no_grad():
        x, y = learn.dls.train.dataset.tensors
        return learn.loss_func(learn.model(x), y).item()


@pytest.mark.parametrize('schedule', ['fit', 'fit_one_cycle'])
@pytest.mark.parametrize('opt', sorted(OPTIMIZERS))
def test_one_training_step_changes_the_loss(opt, schedule):
    learn = _learner(opt)
    before = _loss(learn)
    w0 = [p.detach().clone() for p in learn.model.parameters()]
    with learn.no_bar(), learn.no_logging(): getattr(learn, schedule)(1, 1e-2)
    assert len(learn.recorder.losses) == 1  # exactly one step
    assert any(not torch.equal(a, b) for a, b in zip(w0, learn.model.parameters()))
    assert _loss(learn) != pytest.approx(before, abs=1e-7)


@pytest.mark.parametrize('opt', sorted(WRAPPED))
def test_wrapped_optimizers_follow_fastai_hyperparameters(opt):
    learn = _learner(opt, wd=0.03)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    key, idx = WRAPPED[opt]
    pg = learn.opt.opt.param_groups[0]
    assert type(learn.opt.opt).__name__ == {'adamp': 'AdamP', 'madgrad': 'MADGRAD'}[opt]
    assert pg['weight_decay'] == pytest.approx(0.03)
    # one-cycle over a single step ends at its last (annealed) lr and the top momentum
    assert pg['lr'] == pytest.approx(learn.recorder.lrs[-1]) and pg['lr'] < 1e-2
    mom = pg[key][idx] if idx is not None else pg[key]
    assert mom == pytest.approx(learn.opt.hypers[0]['mom']) and learn.recorder.hps['mom'][-1] == pytest.approx(0.95)
    learn.opt.set_hyper('lr', 5e-4)
    assert learn.opt.opt.param_groups[0]['lr'] == 5e-4


def test_adamw_decouples_weight_decay_and_adam_does_not():
    assert get_opt('adamw').keywords['decouple_wd'] and not get_opt('adam').keywords['decouple_wd']


def test_missing_package_and_unknown_name(monkeypatch):
    monkeypatch.setitem(sys.modules, 'pytorch_optimizer', None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'fastmask\[optim\]'"): get_opt('madgrad')
    with pytest.raises(RecipeError, match='unknown optimizer'): get_opt('lion9000')
