"""timm backbones by name with a fresh linear head; pretrained weights from a local file, a weights folder or the hub."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import timm
import torch

from .errors import RecipeError, WeightsError

__all__ = ['create_model', 'check_arch', 'local_weights', 'hub_reachable', 'WEIGHT_SUFFIXES']

WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pt', '.bin')


def check_arch(arch: str) -> str:
    "Return `arch` if timm knows it, else a one-line RecipeError."
    if arch not in timm.list_models() and arch not in timm.list_models(pretrained=True):
        raise RecipeError(f"unknown architecture '{arch}' (any timm model name, e.g. mobilenetv2_100, efficientnet_b3)")
    return arch


def weights_dir() -> Path | None:
    "The folder of local weight files named by timm model name (`FASTMASK_WEIGHTS`), if set."
    d = os.environ.get('FASTMASK_WEIGHTS')
    return Path(d).expanduser() if d else None


def local_weights(arch: str) -> Path | None:
    "A weights file for `arch` in the weights folder (`{arch}.safetensors`, `.pth`, ...), if there is one."
    d = weights_dir()
    if d is None: return None
    for suf in WEIGHT_SUFFIXES:
        if (d / f'{arch}{suf}').is_file(): return d / f'{arch}{suf}'
    return None


def hub_reachable(host: str = 'huggingface.co', timeout: float = 2.0) -> bool:
    "Whether the model hub answers within `timeout` seconds (False when HF_HUB_OFFLINE is set)."
    if os.environ.get('HF_HUB_OFFLINE', '0') not in ('0', '', 'false'): return False
    try:
        with socket.create_connection((host, 443), timeout=timeout): return True
    except OSError: return False


def _hub_cached(arch: str) -> bool:
    "Whether timm's hub weights for `arch` are already in the local Hugging Face cache."
    try:
        from huggingface_hub import try_to_load_from_cache
        cfg = timm.models.get_pretrained_cfg(arch)
        hub_id = getattr(cfg, 'hf_hub_id', None) if cfg is not None else None
        if not hub_id: return False
        return any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in ('model.safetensors', 'pytorch_model.bin'))
    except Exception: return False


def create_model(arch: str, n_out: int, pretrained: bool = False, weights=None, **kwargs) -> torch.nn.Module:
    "A timm model with an `n_out` linear head; pretrained from `weights`, the weights folder, or the hub."
    check_arch(arch)
    file = Path(weights).expanduser() if weights else (local_weights(arch) if pretrained else None)
    if file is not None:
        if not file.is_file(): raise WeightsError(f'{file}: weights file not found (expected weights for {arch})')
        try:
            return timm.create_model(arch, pretrained=True, num_classes=n_out,
                                     pretrained_cfg_overlay=dict(file=str(file)), **kwargs)
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise WeightsError(f'{file}: does not fit architecture {arch} ({first})') from None
    if pretrained and not _hub_cached(arch) and not hub_reachable():
        raise WeightsError(f"no pretrained weights for '{arch}': the model hub is unreachable and none are cached; "
                           f"pass --weights FILE, set FASTMASK_WEIGHTS to a folder of {arch}.safetensors files, "
                           f"or train with --no-pretrained")
    return timm.create_model(arch, pretrained=pretrained, num_classes=n_out, **kwargs)
