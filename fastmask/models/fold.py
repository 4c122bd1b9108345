"""BatchNorm folded into the convolution before it, for inference: the same outputs with one pass over the
activations less per layer (measured on the Lite0 feature pass: `benchmarks/fold.py`).

Which BatchNorm reads which convolution's output is observed, not assumed from module names: forward hooks on a
small probe image record every BatchNorm whose input is exactly a convolution's output tensor. The folded copy is
then checked against the original on that image; a model whose outputs differ (a convolution's output also read
elsewhere) or that does not run on the probe image is returned unfolded. torch's `fuse_conv_bn_eval` does the
arithmetic; a timm `BatchNormAct2d` keeps its activation (and dropout) as a small `Sequential`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fastmask.runtime import Runtime, inference_model, resolve_precision

__all__ = ['fold_batchnorm', 'conv_bn_pairs', 'folded_inference_model']


def _foldable(bn: nn.Module) -> bool:
    "A plain BatchNorm2d, or timm's BatchNormAct2d (BatchNorm2d, then dropout and an activation)."
    return type(bn) is nn.BatchNorm2d or (type(bn).__name__ == 'BatchNormAct2d' and isinstance(bn, nn.BatchNorm2d))


def _probe_input(model: nn.Module, size: int) -> torch.Tensor | None:
    "A random image batch for `model` (the first convolution's input channels), on its device and dtype."
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    p = next(model.parameters(), None)
    if conv is None or p is None: return None
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, conv.in_channels, size, size, generator=g).to(p.device, p.dtype)


@torch.no_grad()
def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    "Names of (convolution, BatchNorm) pairs where the BatchNorm's input is the convolution's output, on input `x`."
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    outs, pairs, hooks = {}, [], []
    def conv_hook(m, i, o): outs[id(o)] = (m, o)   # the tensor is kept so that its id is not reused
    def bn_hook(m, i, o):
        hit = outs.get(id(i[0]))
        if hit is not None and hit[1] is i[0]: pairs.append((names[id(hit[0])], names[id(m)]))
    for m in model.modules():
        if isinstance(m, nn.Conv2d): hooks.append(m.register_forward_hook(conv_hook))
        elif _foldable(m): hooks.append(m.register_forward_hook(bn_hook))
    try: model(x)
    finally:
        for h in hooks: h.remove()
    used = [n for pair in pairs for n in pair]
    return [p for p in pairs if used.count(p[0]) == 1 and used.count(p[1]) == 1]   # a module used twice stays


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition('.')
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, size: int = 64, atol: float = 1e-4) -> nn.Module:
    """An eval-mode copy of `model` with every BatchNorm that reads a convolution's output folded into it, or
    `model` itself where nothing folds or the folded copy's outputs on a random `size` px batch differ by more than
    `atol` (relative to their scale)."""
    if model.training: raise ValueError('fold_batchnorm: the model must be in eval mode (running statistics)')
    x = _probe_input(model, size)
    if x is None: return model
    try: pairs = conv_bn_pairs(model, x)
    except (RuntimeError, ValueError, TypeError): return model   # not a convnet taking this input
    if not pairs: return model
    folded = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        _replace(folded, conv_name, fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Sequential(bn.drop, bn.act) if hasattr(bn, 'act') else nn.Identity())
    ref, out = model(x), folded(x)
    ref, out = (ref[0], out[0]) if isinstance(ref, (tuple, list)) else (ref, out)
    scale = ref.float().abs().max().clamp_min(1.0)
    return folded if torch.allclose(out.float(), ref.float(), rtol=0, atol=atol * float(scale)) else model


def folded_inference_model(model: nn.Module, runtime: Runtime | None = None, device=None) -> nn.Module:
    """`runtime.inference_model` (device, eval mode, channels-last, compile) of the BatchNorm-folded copy where the
    runtime computes in fp32 (a CPU's `auto`): the caller's model keeps its layers (a Learner's model under the linear
    probe trains on afterwards). Under bf16 / fp16 autocast the model is not folded: folded weights rounded to 16 bits
    would predict visibly differently from the validation pass of the same run."""
    model = model.to(device).eval()
    if resolve_precision(runtime, device) == 'fp32': model = fold_batchnorm(model)
    return inference_model(model, runtime, device)
