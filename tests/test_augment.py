"""Batch augmentation: equivalent to the report's torchvision transforms, labels kept aligned, training split only."""
import numpy as np
import pytest
import torch
from fastai.vision.all import TensorCategory, TensorImage

from fastmask.data.augment import ORDERS, CameraAugment, ReportAugment, ToFloatImage, batch_tfms, colour_to_float, flip_rotate, jitter_matrices

TF = pytest.importorskip('torchvision.transforms.functional', reason='torchvision gives the reference transforms')


def _smooth(n=4, h=40, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.nn.functional.interpolate(torch.rand(n, 3, 5, 5, generator=g), (h, w), mode='bilinear') * 255).to(torch.uint8)


@pytest.mark.parametrize('deg,flip', [(3.0, False), (-2.0, True), (17.0, True)])
def test_flip_rotate_matches_torchvision(deg, flip):
    from torchvision.transforms import InterpolationMode
    x = _smooth()
    ref = TF.rotate(TF.hflip(x) if flip else x, deg, interpolation=InterpolationMode.NEAREST)
    out = flip_rotate(x, torch.full((4,), deg), torch.full((4,), flip))
    assert (out != ref).float().mean() < 1e-3


@pytest.mark.parametrize('k', range(len(ORDERS)))
def test_colour_jitter_matches_torchvision(k):
    x = _smooth(seed=k)
    xf = x.float() / 255
    b, c, s = torch.tensor([1.09, 0.91, 1.0, 0.95]), torch.tensor([0.92, 1.08, 1.1, 1.0]), torch.tensor([1.1, 0.9, 0.95, 1.05])
    m, t = jitter_matrices(xf.mean((2, 3)), b, c, s, torch.full((4,), k))
    out = colour_to_float(x, m, t)
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for i in range(4):
        ref = xf[i:i + 1]
        for j in ORDERS[k]: ref = fns[j](ref, float((b, c, s)[j][i]))
        assert (out[i:i + 1] - ref).abs().mean() < 1e-3               # differs only where torchvision clips midway


def _batch(n=16, size=40):
    "Item i: horizontal stripes of frequency i+1 (mirror-symmetric), label i; so image identity survives flips."
    y = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    k = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1)
    g = (torch.sin(2 * torch.pi * k * (y + 0.5) / size) + 1) / 2          # (n, size, 1)
    x = torch.stack([g, 0.6 * g + 0.2, 1 - g], 1).expand(n, 3, size, size)
    return TensorImage((x * 200 + 20).round().to(torch.uint8).contiguous()), TensorCategory(torch.arange(n) % 18)


def test_labels_untouched_and_shapes_kept():
    x, y = _batch()
    aug = ReportAugment()
    xa, ya = aug((x, y), split_idx=0)
    assert xa.shape == x.shape and xa.dtype == torch.float32 and isinstance(xa, TensorImage)
    assert torch.equal(ya, y) and isinstance(ya, TensorCategory)
    assert 0 <= xa.min() and xa.max() <= 1
    changed = (xa - x.float() / 255).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.3                          # items get a rotation or a jitter
    # item i is still image i (whose label is y[i]): its stripes correlate best with source i
    a, s = xa.mean(1).flatten(1), (x.float() / 255).mean(1).flatten(1)
    a, s = a - a.mean(1, keepdim=True), s - s.mean(1, keepdim=True)
    corr = (a / a.norm(dim=1, keepdim=True)) @ (s / s.norm(dim=1, keepdim=True)).T
    assert torch.equal(corr.argmax(1), torch.arange(len(x)))


def test_validation_split_unchanged():
    x, y = _batch()
    xa, ya = ReportAugment()((x, y), split_idx=1)
    assert torch.equal(xa, x) and torch.equal(ya, y)
    tf = ToFloatImage()
    once = tf(xa)
    assert once.is_floating_point() and torch.allclose(once, x.float() / 255)
    assert torch.allclose(tf(once), once)  # float input passes through unscaled


def test_random_choice_one_of_two():
    "Affine items keep their colours; jittered items keep their geometry (flip aside), as RandomChoice does."
    x = TensorImage(_smooth(64, 24, 24, seed=5))
    aug = ReportAugment(deg=10)
    aug.before_call((x,), 0)
    out = aug.encodes(x)
    src = x.float() / 255
    for i in range(len(x)):
        s = src[i].flip(-1) if aug.do_flip[i] else src[i]
        if aug.do_affine[i]: assert abs(aug.angle[i]) < 3 or not torch.allclose(out[i], s)   # rotated
        else:
            lin = np.corrcoef(out[i].flatten().numpy(), s.flatten().numpy())[0, 1]
            assert lin > 0.95                                              # same geometry, colours only
    assert 0.2 < aug.do_affine.float().mean() < 0.8 and 0.2 < aug.do_flip.float().mean() < 0.8


def test_batch_tfms_through_fastai_pipeline():
    from fasttransform import Pipeline
    x, y = _batch()
    train, valid = Pipeline(batch_tfms(True), split_idx=0), Pipeline(batch_tfms(True), split_idx=1)
    xt, yt = train((x, y))
    xv, yv = valid((x, y))
    assert torch.equal(yt, y) and torch.equal(yv, y)
    assert not torch.allclose(xt, xv) and abs(float(xv.mean())) < 3
    dec = valid.decode((xv, yv))[0]
    assert (dec.long() - x.long()).abs().max() <= 1                   # show_batch decodes back to pixels


def _camera(x, **parts):
    "CameraAugment on `x` with every item degraded by exactly the named parts (down-scale, jpeg, blur)."
    aug = CameraAugment(1.0)
    aug.before_call((x,), 0)
    on = torch.tensor([parts.get('scale', False), parts.get('jpeg', False), parts.get('blur', False)])
    aug.parts = on.expand(len(x), 3).clone()
    aug.factor, aug.q, aug.s = torch.full((len(x),), 0.5), torch.full((len(x),), 40), torch.full((len(x),), 1.0)  # mid-range
    return aug, aug.encodes(x)


@pytest.mark.parametrize('part', ['scale', 'jpeg', 'blur'])
def test_camera_parts_degrade_detail_and_keep_the_picture(part):
    "Each part removes fine detail (high-frequency energy) while the item stays the same picture, as uint8."
    x = TensorImage(_smooth(8, 48, 48, seed=3))
    noise = (torch.randint(0, 2, x.shape) * 60).to(torch.uint8)
    x = TensorImage((x.int() // 2 + noise).clamp(0, 255).to(torch.uint8))   # sharp pixel noise on a smooth picture
    _, out = _camera(x, **{part: True})
    assert out.dtype == torch.uint8 and out.shape == x.shape and isinstance(out, TensorImage)
    detail = lambda t: (t.float()[..., 1:] - t.float()[..., :-1]).abs().mean((1, 2, 3))
    assert (detail(out) < 0.9 * detail(x)).all()
    a, s = out.float().flatten(1), x.float().flatten(1)
    corr = ((a - a.mean(1, keepdim=True)) * (s - s.mean(1, keepdim=True))).sum(1) / (
        (a - a.mean(1, keepdim=True)).norm(dim=1) * (s - s.mean(1, keepdim=True)).norm(dim=1))
    assert (corr > 0.6).all()


def test_camera_draws_items_and_parts_by_probability_and_skips_validation():
    x = TensorImage(_smooth(400, 8, 8, seed=4))
    aug = CameraAugment(0.5)
    aug.before_call((x,), 0)
    touched = aug.parts.any(1).float().mean()
    assert 0.3 < touched < 0.5                       # p * (1 - 1/8): an item drawn with no part is left alone
    assert 0.2 < aug.parts[:, 1].float().mean() < 0.3
    out = aug.encodes(x)
    same = (out == x).flatten(1).all(1)
    assert same[~aug.parts.any(1)].all() and not same[aug.parts.any(1)].all()
    assert torch.equal(CameraAugment(1.0)((x,), split_idx=1)[0], x)     # validation images are never touched


def test_camera_is_a_recipe_field_reaching_the_training_pipeline_only(tiny_demo):
    from fastmask.recipes import resolve
    from fastmask.runners.train import build_learner
    from fastmask.runtime import Runtime
    learn = build_learner(resolve('cpu_split_lite0', quick=True, size=32, bs=8, camera=0.4), tiny_demo, 'gender',
                          runtime=Runtime(num_workers=0))
    cams = [t for t in learn.dls.train.after_batch.fs if isinstance(t, CameraAugment)]
    assert len(cams) == 1 and cams[0].prob == 0.4
    assert not [t for t in batch_tfms(False, camera=0.4) if isinstance(t, CameraAugment)]
    xb, _ = learn.dls.train.one_batch()
    assert xb.is_floating_point() and xb.shape[-1] == 32
