"""CutMix of vertical halves: image mixing, area-weighted labels, forced >= 60 partners, and a fit with it."""
from types import SimpleNamespace

import pytest
import torch
from fastai.losses import CrossEntropyLossFlat

from fastmask.callbacks.cutmix import HalfCutMix, half_cutmix, old_mask, partners
from fastmask.errors import RecipeError


def _images(n=4, h=6, w=10):
    "Image i is filled with the value i."
    return torch.arange(n, dtype=torch.float32)[:, None, None, None].expand(n, 3, h, w).clone()


@pytest.mark.parametrize('cut,keep_left,lam', [(0.5, True, 0.5), (0.3, True, 0.3), (0.3, False, 0.7), (0.8, False, 0.2)])
def test_half_cutmix_columns_and_area(cut, keep_left, lam):
    x = _images()
    perm = torch.tensor([2, 3, 0, 1])
    out, got = half_cutmix(x, perm, cut, keep_left)
    assert out.shape == x.shape and got == pytest.approx(lam)
    c = round(10 * cut)
    own, other = (out[..., :c], out[..., c:]) if keep_left else (out[..., c:], out[..., :c])
    for i in range(4):
        assert (own[i] == i).all() and (other[i] == perm[i]).all()
        assert (out[i] == i).float().mean().item() == pytest.approx(lam)    # label weight = share of own pixels
    assert (x == _images()).all()                                             # the input batch is untouched


def test_partners_force_old_people():
    y = torch.tensor([0, 1, 5, 8, 3, 14, 2, 6])                                # 18-class ids: id % 3 == 2 is >= 60
    old = old_mask(y, 'all')
    assert old.tolist() == [False, False, True, True, False, True, True, False]
    g = torch.Generator().manual_seed(0)
    for _ in range(5): assert old[partners(y, old, g)].all()
    assert old_mask(torch.tensor([2, 1]), 'age').tolist() == [True, False] and old_mask(y, 'mask') is None
    p = partners(y, old_mask(torch.zeros(8, dtype=torch.long), 'all'), g)  # nobody old: a permutation
    assert sorted(p.tolist()) == list(range(8))


def test_loss_is_mixed_by_area():
    cb = HalfCutMix(force_old=True)
    cb.learn = SimpleNamespace(training=True, loss_func=CrossEntropyLossFlat())
    cb.before_train()
    pred, y, y1 = torch.randn(6, 18), torch.randint(0, 18, (6,)), torch.randint(0, 18, (6,))
    cb.lam, cb.yb1 = 0.25, (y1,)
    ce = CrossEntropyLossFlat()
    assert cb.learn.loss_func(pred, y).item() == pytest.approx(0.25 * ce(pred, y).item() + 0.75 * ce(pred, y1).item(), rel=1e-5)
    cb.after_train()
    assert isinstance(cb.learn.loss_func, CrossEntropyLossFlat)
    with pytest.raises(RecipeError): HalfCutMix(cut=1.0)


def test_recipe_option_adds_cutmix_and_fits(tiny_demo, tmp_path):
    from fastmask.recipes.registry import override, resolve
    from fastmask.runners.train import build_learner, fit_task
    r = override(resolve('top_cutmix_effnet_b3', quick=True, size=32, epochs=1, bs=16), arch='mobilenetv2_100')
    learn = build_learner(r, tiny_demo, 'all')
    cb = [c for c in learn.cbs if isinstance(c, HalfCutMix)]
    assert len(cb) == 1 and cb[0].force_old and cb[0].task == 'all'
    seen = []
    orig = cb[0].before_batch
    def spy():
        orig()
        seen.append((tuple(learn.xb[0].shape), cb[0].lam, cb[0].yb1[0].shape))
    cb[0].before_batch = spy
    fit_task(learn, tmp_path)
    assert seen and all(s[0][1:] == (3, 32, 32) and s[1] == 0.5 and s[2][0] == s[0][0] for s in seen)
    assert not isinstance(learn.loss_func, type(cb[0].lf)) and (tmp_path / 'model_all.pth').exists()
