"""How a run computes (not what it learns): the `Runtime` of a run, and the one seam that turns it into device
decisions — precision, channels-last, autocast, cudnn flags, compile — for training *and* inference.

A `Runtime` is part of a run's specification (`fastmask.runspec.RunSpec`), recorded in its config.json, and read
back by everything that later predicts with the run, so validation, the submission, `predict` and `evaluate` use
the run's own precision unless a command overrides it. Nothing here is process-wide state: functions take the
runtime they decide for; the Python API may scope a default with `use(...)`.

`auto` precision: on CUDA, bf16 autocast where the GPU computes bf16 natively (compute capability >= 8: A100, H100,
RTX 30xx and later), else fp16 with loss scaling (V100, T4: `torch.cuda.is_bf16_supported()` is True there through
emulation, which is why it is not asked); Apple `mps` fp16; on a CPU fp32 — measured on a 2-core avx512_bf16 CPU in
fastai's loop (EfficientNet-Lite0, 128-160 px, batch 32), fp32 + channels-last trains 1.43x faster than plain fp32
while bf16 autocast + channels-last is slower than fp32 + channels-last (`benchmarks/precision.py`). `auto`
channels-last: on for CUDA and for an AVX2 or AVX-512 CPU (oneDNN's vectorised kernels), off elsewhere.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import torch

from fastmask.errors import FastmaskError

__all__ = ['RuntimeSettingError', 'PRECISIONS', 'Runtime', 'default_runtime', 'use', 'check_precision', 'cpu_flags', 'cpu_bf16_fast',
           'cpu_channels_last_fast', 'as_device', 'cuda_capability', 'resolve_precision', 'use_channels_last',
           'autocast_ctx', 'inference_model', 'prepare_backends', 'tune_allocator', 'resolved']

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


class RuntimeSettingError(FastmaskError, ValueError):
    "A runtime setting that does not exist (an unknown precision)."


def check_precision(precision: str | None) -> str | None:
    "A known precision name, or a one-line error naming the choices."
    if precision is not None and precision not in PRECISIONS:
        raise RuntimeSettingError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class Runtime:
    "How a run computes: precision, memory format, compile, image cache, loader workers, determinism."
    precision: str = 'auto'              # auto | fp32 | bf16 | fp16 (see the module docstring)
    channels_last: bool | None = None    # None: on CUDA and on an AVX2 or AVX-512 CPU
    compile: bool = False                # opt-in torch.compile of the model (state_dict keys unchanged)
    compile_backend: str = 'inductor'
    cache: bool = True                   # decoded-image cache for training and prediction
    num_workers: int | None = None       # data-loader worker processes (None: per machine)
    deterministic: bool = False          # bit-reproducible cudnn (slower); else cudnn.benchmark on a GPU

    def __post_init__(self): check_precision(self.precision)

    def changed(self, **changes) -> 'Runtime':
        "A copy with `changes` (None leaves a field as it is)."
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict: return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> 'Runtime':
        "A runtime from `to_dict` output (unknown keys, e.g. an older `speed` record's `heap_malloc`, are ignored)."
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    @classmethod
    def from_config(cls, cfg: dict) -> 'Runtime':
        "The runtime a run folder's config.json records (fastmask <= 0.2: `options.speed` and the recipe's speed fields)."
        if cfg.get('runtime') is not None: return cls.from_dict(cfg['runtime'])
        opts, r = cfg.get('options') or {}, cfg.get('recipe') or {}
        return cls.from_dict(dict(opts.get('speed') or {}, num_workers=opts.get('num_workers'),
                                  **{k: r[k] for k in ('precision', 'channels_last') if k in r}))


_DEFAULT: ContextVar[Runtime] = ContextVar('fastmask_runtime', default=Runtime())


def default_runtime() -> Runtime:
    "The runtime of Python API calls that are given none (`Runtime()` unless inside `use(...)`)."
    return _DEFAULT.get()


@contextmanager
def use(runtime: Runtime | None = None, **changes):
    "Python API: scope a default runtime, e.g. `with use(precision='fp32'): learner(...)`; restored on exit."
    token = _DEFAULT.set((runtime or default_runtime()).changed(**changes))
    try: yield _DEFAULT.get()
    finally: _DEFAULT.reset(token)


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
    """Whether channels-last pays on this CPU: AVX-512 or AVX2 (oneDNN's vectorised kernels). Training step of the
    Lite0 gender model at 160 px (`benchmarks/cpu_levers.py`): 1.43x on a 2-core AVX-512 EPYC; 1.18x there with
    oneDNN held to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`, an emulation: no AVX2-only processor was at hand)."""
    return bool({'avx512f', 'avx2'} & cpu_flags(cpuinfo))


def as_device(d) -> torch.device:
    "A torch device from a device, a name or None (the CPU)."
    return torch.device(d if d is not None else 'cpu')


def cuda_capability(device=None) -> tuple[int, int]:
    "The compute capability of a CUDA device, e.g. (8, 0) for an A100, (7, 0) for a V100."
    return torch.cuda.get_device_capability(device)


def resolve_precision(runtime: Runtime | None = None, device=None) -> str:
    "fp32, bf16 or fp16 for `device`: the runtime's choice, `auto` as in the module docstring."
    p, dev = (runtime or default_runtime()).precision, as_device(device)
    if p != 'auto': return p
    if dev.type == 'cuda': return 'bf16' if cuda_capability(dev)[0] >= 8 else 'fp16'
    if dev.type == 'mps': return 'fp16'
    return 'fp32'


def use_channels_last(runtime: Runtime | None = None, device=None) -> bool:
    "Whether to use the channels-last memory format on `device` (`None`: CUDA, and a CPU where it pays)."
    c = (runtime or default_runtime()).channels_last
    if c is not None: return bool(c)
    dev = as_device(device)
    return dev.type == 'cuda' or (dev.type == 'cpu' and cpu_channels_last_fast())


def autocast_ctx(runtime: Runtime | None = None, device=None):
    "The autocast context of inference on `device` at the runtime's resolved precision (a null context for fp32)."
    p = resolve_precision(runtime, device)
    if p == 'fp32': return nullcontext()
    return torch.autocast(as_device(device).type, dtype=torch.bfloat16 if p == 'bf16' else torch.float16)


def inference_model(model, runtime: Runtime | None = None, device=None):
    "The model moved to `device` in eval mode, channels-last and compiled per the runtime."
    rt = runtime or default_runtime()
    model = model.to(device).eval()
    if use_channels_last(rt, device): model = model.to(memory_format=torch.channels_last)
    if rt.compile: model.compile(backend=rt.compile_backend)
    return model


def prepare_backends(runtime: Runtime | None = None, device=None) -> dict:
    "Set cudnn's flags for a run: deterministic kernels when asked, else cudnn.benchmark on a GPU; returns them."
    rt, dev = runtime or default_runtime(), as_device(device)
    flags = dict(deterministic=rt.deterministic, benchmark=dev.type == 'cuda' and not rt.deterministic)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags['deterministic'], flags['benchmark']
    return flags


def resolved(runtime: Runtime | None = None, device=None) -> dict:
    "What the runtime means on `device`: the record a run keeps of what it used."
    rt = runtime or default_runtime()
    return dict(device=str(as_device(device)), precision=resolve_precision(rt, device),
                channels_last=use_channels_last(rt, device), compile=rt.compile, deterministic=rt.deterministic)


_TUNED = []


def tune_allocator(enable: bool = True) -> bool:
    "glibc only: serve big tensors (a 64x3x224x224 batch is 38 MB) from the reused heap, not fresh page-faulting mmaps."
    if _TUNED or not enable: return bool(_TUNED)
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(-4, 0) == 1 and libc.mallopt(-1, 2**31 - 1) == 1   # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 2 GB
    except (OSError, AttributeError): ok = False
    _TUNED.append(ok)
    return ok
