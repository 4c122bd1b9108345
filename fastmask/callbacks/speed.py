"""Speed callbacks of a Learner: mixed precision, channels-last and opt-in torch.compile per `fastmask.settings`."""
from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.callback import channelslast as fastai_channels_last
from fastai.callback.fp16 import MixedPrecision

from fastmask.settings import as_device, current, resolve_precision, use_channels_last

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


class Autocast(Callback):
    """bf16 autocast of the forward pass on any device (fastai's MixedPrecision is CUDA-only); no scaler needed.

    The model's own forward is wrapped (an instance attribute: parameters and `state_dict` are untouched), so no
    autocast state outlives a batch, whatever happens in it; the loss is computed in fp32 from fp32 predictions."""
    order = MixedPrecision.order
    def __init__(self, dtype=torch.bfloat16): self.dtype = dtype
    def before_batch(self):
        m = self.learn.model
        if not isinstance(m.__dict__.get('forward'), _AutocastForward):
            m.forward = _AutocastForward(m.forward, as_device(self.dls.device).type, self.dtype)
    def after_pred(self): self.learn.pred = self.pred.float() if torch.is_floating_point(self.pred) else self.pred


def accelerate(learn, precision: str | None = None, channels_last: bool | None = None, compile: bool | None = None):
    "Add the speed settings to a Learner: mixed precision and channels-last (per `fastmask.settings`), opt-in compile."
    dev = learn.dls.device
    p = resolve_precision(dev, precision)
    if use_channels_last(dev, channels_last): learn.add_cb(ChannelsLast())
    if p != 'fp32':
        if as_device(dev).type == 'cuda': learn.to_bf16() if p == 'bf16' else learn.to_fp16()
        elif p == 'bf16': learn.add_cb(Autocast(torch.bfloat16))
        else: raise ValueError('fp16 mixed precision needs a CUDA device (use bf16 on the CPU)')
    s = current()
    if s.compile if compile is None else compile: learn.model.compile(backend=s.compile_backend)
    learn.speed = dict(precision=p, channels_last=use_channels_last(dev, channels_last),
                       compile=bool(s.compile if compile is None else compile))
    return learn
