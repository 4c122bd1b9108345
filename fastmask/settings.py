"""Process-wide speed settings (precision, channels-last, compile, image cache) and how `auto` resolves per device.

`auto` precision means bf16 autocast (or fp16 with loss scaling where CUDA lacks bf16) on CUDA and fp32 on a
CPU; `auto` channels-last means on for CUDA and for an AVX-512 CPU (oneDNN's channels-last kernels), off elsewhere.
Measured on a 2-core avx512_bf16 CPU in fastai's training loop (EfficientNet-Lite0, 128-160 px, batch 32): fp32 +
channels-last trains 1.43x faster than plain fp32, while bf16 autocast + channels-last is slower than fp32 +
channels-last (its casts cost more than the bf16 arithmetic saves on 2 cores), so `auto` keeps fp32 on a CPU;
`--precision bf16` still turns bf16 autocast on (`benchmarks/precision.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ['PRECISIONS', 'Speed', 'SETTINGS', 'current', 'configure', 'speed', 'tune_allocator', 'cpu_flags', 'cpu_bf16_fast', 'cpu_channels_last_fast',
           'resolve_precision', 'use_channels_last', 'as_device', 'autocast_ctx', 'inference_model']

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


@dataclass(frozen=True)
class Speed:
    "Speed settings of a process; `auto` resolves per device (see the module docstring)."
    precision: str = 'auto'              # auto | fp32 | bf16 | fp16
    channels_last: bool | None = None    # None: on CUDA and on an AVX-512 CPU
    compile: bool = False                # opt-in torch.compile of the model (in place, state_dict keys unchanged)
    compile_backend: str = 'inductor'
    cache: bool = True                   # decoded-image cache for training and prediction
    heap_malloc: bool = True             # glibc: keep large tensors on the reusable heap (see `tune_allocator`)


SETTINGS = Speed()


def current() -> Speed:
    "The speed settings in force now (read it through this function: `configure` replaces the object)."
    return SETTINGS


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


@lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> frozenset:
    "The CPU's feature flags (Linux `/proc/cpuinfo`; empty elsewhere)."
    try: text = Path(cpuinfo).read_text()
    except OSError: return frozenset()
    return frozenset(next((ln.split(':', 1)[1].split() for ln in text.splitlines() if ln.startswith('flags')), []))


def cpu_bf16_fast(cpuinfo: str = '/proc/cpuinfo') -> bool:
    "Whether this CPU computes bf16 natively (avx512_bf16 or AMX flags)."
    return bool({'avx512_bf16', 'amx_bf16'} & cpu_flags(cpuinfo))


def cpu_channels_last_fast(cpuinfo: str = '/proc/cpuinfo') -> bool:
    "Whether channels-last pays on this CPU: AVX-512 (oneDNN's blocked kernels); measured 1.43x on such a CPU."
    return 'avx512f' in cpu_flags(cpuinfo)


def as_device(d) -> torch.device:
    "A torch device from a device, a name or None (the CPU)."
    return torch.device(d if d is not None else 'cpu')


def resolve_precision(device=None, precision: str | None = None) -> str:
    "fp32, bf16 or fp16 for `device`: `auto` (the default) per the module docstring."
    p, dev = precision or SETTINGS.precision, as_device(device)
    if p != 'auto': return p
    if dev.type == 'cuda': return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
    return 'fp32'


def use_channels_last(device=None, channels_last: bool | None = None) -> bool:
    "Whether to use the channels-last memory format on `device` (`None`: CUDA, and a CPU where it pays)."
    c = SETTINGS.channels_last if channels_last is None else channels_last
    if c is not None: return bool(c)
    dev = as_device(device)
    return dev.type == 'cuda' or (dev.type == 'cpu' and cpu_channels_last_fast())


def autocast_ctx(device=None, precision: str | None = None):
    "The autocast context for inference on `device` with the resolved precision."
    p = resolve_precision(device, precision)
    if p == 'fp32': return nullcontext()
    return torch.autocast(as_device(device).type, dtype=torch.bfloat16 if p == 'bf16' else torch.float16)


def inference_model(model, device=None, channels_last: bool | None = None, compile: bool | None = None):
    "The model moved to `device` in eval mode, channels-last and compiled per the settings."
    model = model.to(device).eval()
    if use_channels_last(device, channels_last): model = model.to(memory_format=torch.channels_last)
    s = SETTINGS
    if s.compile if compile is None else compile: model.compile(backend=s.compile_backend)
    return model
