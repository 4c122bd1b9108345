"""Tests of the loss registry: soft macro F1 against scikit-learn, gradients, weighted mixes, fastai's decoding protocol."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from fastmask.errors import RecipeError
from fastmask.losses import LOSSES, SoftF1LossFlat, get_loss, soft_f1


def _batch(n_classes, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_classes, generator=g), torch.randint(0, n_classes, (n,), generator=g)


@pytest.mark.parametrize('n_classes', [3, 18])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_soft_f1_is_sklearn_macro_f1_on_one_hot(n_classes, seed):
    logits, target = _batch(n_classes, n=50, seed=seed)
    pred = logits.argmax(1)
    expected = f1_score(target.numpy(), pred.numpy(), average='macro')
    assert 0 < expected < 1
    assert soft_f1(F.one_hot(pred, n_classes).float(), target).item() == pytest.approx(expected, abs=1e-6)
    # the loss itself on near-one-hot softmax outputs: 1 - macro F1
    loss = get_loss('f1', n_classes)(F.one_hot(pred, n_classes).float() * 50, target)
    assert loss.item() == pytest.approx(1 - expected, abs=1e-4)


def test_soft_f1_counts_fractional_tp_fp_fn():
    # one item of class 0 predicted 0.4 / 0.6: class 0 tp .4 fn .6 -> F1 .8 / 1.4; class 1 fp .6 -> F1 0
    assert soft_f1(torch.tensor([[0.4, 0.6]]), torch.tensor([0])).item() == pytest.approx(0.8 / 1.4 / 2)


@pytest.mark.parametrize('name', ['f1', 'ce_f1', 'f1_focal', 'focal', 'label_smoothing', 'ce'])
def test_gradients_flow(name):
    logits, target = _batch(18)
    logits.requires_grad_()
    get_loss(name, 18)(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0 and torch.isfinite(logits.grad).all()


def test_soft_f1_gradient_raises_true_class_logit():
    logits, target = _batch(5, n=30)
    logits.requires_grad_()
    get_loss('f1', 5)(logits, target).backward()
    true_grad = logits.grad.gather(1, target[:, None])
    assert (true_grad < 0).all()  # descending the loss raises every true-class logit


def test_ce_f1_endpoints():
    logits, target = _batch(3)
    ce, f1 = get_loss('ce', 3)(logits, target), get_loss('f1', 3)(logits, target)
    assert get_loss('ce_f1', 3, f1_weight=0.0)(logits, target).item() == pytest.approx(ce.item())
    assert get_loss('ce_f1', 3, f1_weight=1.0)(logits, target).item() == pytest.approx(f1.item())
    mid = get_loss('ce_f1', 3, f1_weight=0.25)(logits, target).item()
    assert mid == pytest.approx(0.75 * ce.item() + 0.25 * f1.item())


def test_f1_focal_mix_and_focal_is_fastais():
    from fastai.losses import FocalLossFlat
    logits, target = _batch(18)
    focal = get_loss('focal', 18, gamma=2.0)
    assert isinstance(focal, FocalLossFlat)
    f, fl = get_loss('f1', 18)(logits, target).item(), focal(logits, target).item()
    assert fl < F.cross_entropy(logits, target).item()  # focusing down-weights every item
    assert get_loss('f1_focal', 18)(logits, target).item() == pytest.approx(0.4 * f + 0.6 * fl)
    assert get_loss('f1_focal', 18, f1_weight=0.0, gamma=1.0)(logits, target).item() == \
        pytest.approx(get_loss('focal', 18, gamma=1.0)(logits, target).item())


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_every_loss_decodes_like_fastai(name):
    loss = get_loss(name, 4)
    logits, _ = _batch(4, n=6)
    assert torch.allclose(loss.activation(logits), logits.softmax(-1))
    assert torch.equal(loss.decodes(logits), logits.argmax(-1))


def test_per_item_reduction_for_mixed_loss():
    logits, target = _batch(3, n=7)
    loss = get_loss('ce_f1', 3, f1_weight=0.5)
    loss.reduction = 'none'
    out = loss(logits, target)
    assert out.shape == (7,) and torch.allclose(out.mean(), get_loss('ce_f1', 3, f1_weight=0.5)(logits, target))


def test_bad_names_and_params_are_recipe_errors():
    with pytest.raises(RecipeError, match='unknown loss'): get_loss('nope', 3)
    with pytest.raises(RecipeError, match='f1_weigth'): get_loss('ce_f1', 3, f1_weigth=0.5)
    with pytest.raises(RecipeError, match='between 0 and 1'): get_loss('ce_f1', 3, f1_weight=1.5)
    with pytest.raises(ValueError, match='3 classes'): SoftF1LossFlat(3)(*_batch(18))
