"""Local weights: the head is replaced, the body comes from the file, and bad files fail in one line."""
import time
from dataclasses import replace

import pytest
import timm
import torch
from safetensors.torch import save_file

from fastmask.errors import WeightsError
from fastmask.models.backbones import create_model, local_weights, offline_available

ARCH = 'mobilenetv2_050'   # small, 1000-class checkpoints are 8 MB


def _checkpoint(tmp_path, arch=ARCH, suffix='.safetensors', name=None):
    "A random 1000-class checkpoint of `arch` saved as safetensors or torch file; (path, state dict)."
    torch.manual_seed(0)
    sd = {k: v.clone().contiguous() for k, v in timm.create_model(arch).state_dict().items()}
    f = tmp_path / f'{name or arch}{suffix}'
    save_file(sd, str(f)) if suffix == '.safetensors' else torch.save(sd, f)
    return f, sd


@pytest.mark.parametrize('suffix', ['.safetensors', '.pth'])
def test_head_replaced_and_body_from_file(tmp_path, suffix):
    f, sd = _checkpoint(tmp_path, suffix=suffix)
    m = create_model(ARCH, 3, weights=f)
    got = m.state_dict()
    assert got['classifier.weight'].shape == (3, sd['classifier.weight'].shape[1])
    body = [k for k in sd if not k.startswith('classifier.')]
    assert len(body) > 100 and all(torch.equal(got[k], sd[k]) for k in body)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_weights_folder_found_by_arch_name(tmp_path, monkeypatch):
    f, sd = _checkpoint(tmp_path)
    monkeypatch.setenv('FASTMASK_WEIGHTS', str(tmp_path))
    assert local_weights(ARCH) == f and local_weights('resnet18') is None
    assert offline_available(ARCH)
    m = create_model(ARCH, 5, pretrained=True)
    assert torch.equal(m.state_dict()['conv_stem.weight'], sd['conv_stem.weight'])
    fresh = create_model(ARCH, 5, pretrained=False)   # the folder is only used when pretrained
    assert not torch.equal(fresh.state_dict()['conv_stem.weight'], sd['conv_stem.weight'])


def test_other_architecture_file_is_one_line_error(tmp_path):
    f, _ = _checkpoint(tmp_path, arch='resnet10t')
    with pytest.raises(WeightsError) as e: create_model(ARCH, 3, weights=f)
    msg = str(e.value)
    assert str(f) in msg and ARCH in msg and '\n' not in msg


def test_file_without_the_body_tensors_is_an_error(tmp_path):
    "timm loads non-strictly when it drops the head: a file sharing no keys must still fail."
    f = tmp_path / 'unrelated.safetensors'
    save_file({'something.else': torch.zeros(3)}, str(f))
    with pytest.raises(WeightsError, match='not in the file'): create_model(ARCH, 3, weights=f)


@pytest.mark.parametrize('suffix', ['.safetensors', '.pth'])
def test_corrupt_file_is_one_line_error(tmp_path, suffix):
    f = tmp_path / f'broken{suffix}'
    f.write_bytes(b'\x00not a checkpoint' * 64)
    with pytest.raises(WeightsError) as e: create_model(ARCH, 3, weights=f)
    assert str(f) in str(e.value) and ARCH in str(e.value) and '\n' not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=f'not found.*{ARCH}'): create_model(ARCH, 3, weights=tmp_path / 'nope.pth')


def test_offline_without_weights_fails_fast_with_advice(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('FASTMASK_WEIGHTS', str(tmp_path))   # empty folder
    monkeypatch.setattr('fastmask.models.backbones._hub_cached', lambda arch: False)   # as if nothing were cached
    t = time.time()
    with pytest.raises(WeightsError) as e: create_model(ARCH, 3, pretrained=True)
    assert time.time() - t < 10
    assert '--weights' in str(e.value) and 'FASTMASK_WEIGHTS' in str(e.value) and '--no-pretrained' in str(e.value)


def test_quick_keeps_pretrained_only_when_weights_are_offline(tmp_path, monkeypatch):
    from fastmask.recipes.registry import get_recipe, quick
    r = get_recipe('baseline_mobilenetv2')
    monkeypatch.delenv('FASTMASK_WEIGHTS', raising=False)
    assert r.pretrained and not quick(r).pretrained
    _checkpoint(tmp_path, arch=r.arch)
    monkeypatch.setenv('FASTMASK_WEIGHTS', str(tmp_path))
    assert quick(r).pretrained and quick(r).size == 64
    assert not quick(replace(r, pretrained=False)).pretrained   # a random-init recipe stays random
