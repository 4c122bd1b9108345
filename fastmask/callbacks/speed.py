"""Speed callbacks of a Learner from its run's `Runtime` (`fastmask.runtime`): mixed precision, channels-last, compile."""
from __future__ import annotations

import torch
from fastai.callback import channelslast as fastai_channels_last
from fastai.callback.core import Callback
from fastai.callback.fp16 import AMPMode, MixedPrecision
from torch.amp import GradScaler

from fastmask.runtime import Runtime, as_device, default_runtime, resolve_precision, resolved, use_channels_last

__all__ = ['ChannelsLast', 'Autocast', 'accelerate']


class ChannelsLast(Callback):
    "Model and input batches in channels-last memory format."
    order = fastai_channels_last.ChannelsLast.order  # before any callback that modifies the model
    def before_fit(self): self.learn.model.to(memory_format=torch.channels_last)
    def before_batch(self):
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if getattr(x, 'ndim', 0) == 4 else x
                              for x in self.xb)


class _AutocastForward:
    "A model's forward run under `torch.autocast`: the context closes even when the forward raises."
    def __init__(self, forward, device_type: str, dtype): self.forward, self.device_type, self.dtype = forward, device_type, dtype
    def __call__(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype): return self.forward(*args, **kwargs)


class Autocast(MixedPrecision):
    """fastai's `MixedPrecision` (fp16 loss scaling with a GradScaler on CUDA) on any device, with autocast around the
    model's forward only.

    fastai enters autocast in `before_batch` and leaves it in `after_loss`, so an exception in between (a CUDA
    out-of-memory error) leaves it on for everything that runs later in the process (the next member of a study).
    Here the model's own forward is wrapped (an instance attribute: parameters and `state_dict` are untouched), so
    no autocast state outlives a forward, whatever happens in it; the loss is computed in fp32 from fp32 predictions."""
    order = MixedPrecision.order
    def __init__(self, dtype=torch.bfloat16, device_type: str = 'cpu', **kwargs):
        super().__init__(AMPMode.BF16 if dtype == torch.bfloat16 else AMPMode.FP16, **kwargs)
        self.dtype, self.device_type = dtype, device_type

    @property
    def loss_scaling(self) -> bool: return self.dtype == torch.float16 and self.device_type == 'cuda'   # bf16 needs none

    def before_fit(self):
        self.kwargs['enabled'] = self.loss_scaling
        self.autocast, self.learn.scaler, self.scales = None, GradScaler(self.device_type, **self.kwargs), []

    def before_batch(self):
        m = self.learn.model
        if not isinstance(m.__dict__.get('forward'), _AutocastForward):
            m.forward = _AutocastForward(m.forward, self.device_type, self.dtype)

    def after_loss(self): pass   # no autocast context to leave: the forward closed its own


def accelerate(learn, runtime: Runtime | None = None, channels_last: bool | None = None, device=None):
    """Add the runtime's speed settings to a Learner: autocast (+ loss scaling for fp16 on CUDA), channels-last,
    opt-in compile; `learn.speed` records what they resolved to on the Learner's device (or `device`)."""
    rt = runtime or default_runtime()
    if channels_last is not None: rt = rt.changed(channels_last=channels_last)
    dev = as_device(learn.dls.device if device is None else device)
    p = resolve_precision(rt, dev)
    if use_channels_last(rt, dev): learn.add_cb(ChannelsLast())
    if p != 'fp32':
        if p == 'fp16' and dev.type == 'cpu': raise ValueError('fp16 mixed precision needs a GPU (use bf16 on the CPU)')
        learn.add_cb(Autocast(torch.bfloat16 if p == 'bf16' else torch.float16, dev.type))
    if rt.compile: learn.model.compile(backend=rt.compile_backend)
    learn.speed = resolved(rt, dev)
    return learn
