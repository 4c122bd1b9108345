"""Speed settings: mixed precision, channels-last, opt-in torch.compile and the image cache switch."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

__all__ = ['tune_allocator', 'Speed', 'SETTINGS', 'configure', 'speed', 'resolve_precision', 'use_channels_last', 'ChannelsLast',
           'Autocast', 'accelerate', 'inference_model', 'autocast_ctx']

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


@dataclass(frozen=True)
class Speed:
    "Speed settings; `auto` means: on for CUDA, off for the CPU (where they do not help)."
    precision: str = 'auto'              # auto | fp32 | bf16 | fp16 (auto: bf16 where supported else fp16, on CUDA)
    channels_last: bool | None = None    # None: on CUDA only
    compile: bool = False                # opt-in torch.compile of the model (in place, state_dict keys unchanged)
    compile_backend: str = 'inductor'
    cache: bool = True                   # decoded-image cache for training and prediction
    heap_malloc: bool = True             # glibc: keep large tensors on the reusable heap (see `tune_allocator`)


SETTINGS = Speed()


def configure(**changes) -> Speed:
    "Change the process-wide speed settings (None leaves a field unchanged); return the new settings."
    global SETTINGS
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes.get('precision', 'auto') not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {changes['precision']!r}")
    SETTINGS = replace(SETTINGS, **changes)
    return SETTINGS


@contextmanager
def speed(**changes):
    "Temporarily change the speed settings."
    global SETTINGS
    old = SETTINGS
    try: yield configure(**changes)
    finally: SETTINGS = old


_TUNED = []


def tune_allocator() -> bool:
    "glibc only: serve big tensors (a 64x3x224x224 batch is 38 MB) from the reused heap, not fresh page-faulting mmaps."
    if _TUNED or not SETTINGS.heap_malloc: return bool(_TUNED)
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(-4, 0) == 1 and libc.mallopt(-1, 2**31 - 1) == 1   # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2 GB
    except (OSError, AttributeError): ok = False
    _TUNED.append(ok)
    return ok


def _device(d) -> torch.device: return torch.device(d if d is not None else 'cpu')


def resolve_precision(device=None, precision: str | None = None) -> str:
    "fp32, bf16 or fp16 for `device`: `auto` picks bf16 where CUDA supports it, else fp16, and fp32 on the CPU."
    p, dev = precision or SETTINGS.precision, _device(device)
    if p != 'auto': return p
    if dev.type != 'cuda': return 'fp32'
    return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'


def use_channels_last(device=None, channels_last: bool | None = None) -> bool:
    "Whether to use the channels-last memory format on `device`."
    c = SETTINGS.channels_last if channels_last is None else channels_last
    return _device(device).type == 'cuda' if c is None else bool(c)


class ChannelsLast(Callback):
    "Model and input batches in channels-last memory format."
    order = -1
    def before_fit(self): self.learn.model.to(memory_format=torch.channels_last)
    def before_batch(self):
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if getattr(x, 'ndim', 0) == 4 else x
                              for x in self.xb)


class Autocast(Callback):
    "bf16 autocast of forward and loss on any device (fastai's MixedPrecision is CUDA-only); no scaler needed."
    order = 10
    def __init__(self, dtype=torch.bfloat16): self.dtype = dtype
    ctx = None
    def before_batch(self):
        self.ctx = torch.autocast(_device(self.dls.device).type, dtype=self.dtype)
        self.ctx.__enter__()
    def after_pred(self): self.learn.pred = self.pred.float() if torch.is_floating_point(self.pred) else self.pred
    def after_loss(self): self._exit()
    def after_cancel_batch(self): self._exit()
    def _exit(self):
        if self.ctx is not None: self.ctx.__exit__(None, None, None)
        self.ctx = None


def accelerate(learn, precision: str | None = None, channels_last: bool | None = None, compile: bool | None = None):
    "Add the speed settings to a Learner: mixed precision and channels-last on CUDA, opt-in compile; returns it."
    dev = learn.dls.device
    p = resolve_precision(dev, precision)
    if use_channels_last(dev, channels_last): learn.add_cb(ChannelsLast())
    if p != 'fp32':
        if _device(dev).type == 'cuda': learn.to_bf16() if p == 'bf16' else learn.to_fp16()
        elif p == 'bf16': learn.add_cb(Autocast(torch.bfloat16))
        else: raise ValueError('fp16 mixed precision needs a CUDA device (use bf16 on the CPU)')
    if SETTINGS.compile if compile is None else compile: learn.model.compile(backend=SETTINGS.compile_backend)
    learn.speed = dict(precision=p, channels_last=use_channels_last(dev, channels_last),
                       compile=bool(SETTINGS.compile if compile is None else compile))
    return learn


def autocast_ctx(device=None, precision: str | None = None):
    "The autocast context for inference on `device` with the resolved precision."
    p = resolve_precision(device, precision)
    if p == 'fp32': return nullcontext()
    return torch.autocast(_device(device).type, dtype=torch.bfloat16 if p == 'bf16' else torch.float16)


def inference_model(model, device=None, channels_last: bool | None = None, compile: bool | None = None):
    "The model moved to `device` in eval mode, channels-last and compiled per the settings."
    model = model.to(device).eval()
    if use_channels_last(device, channels_last): model = model.to(memory_format=torch.channels_last)
    if SETTINGS.compile if compile is None else compile: model.compile(backend=SETTINGS.compile_backend)
    return model
