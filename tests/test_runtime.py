"""The runtime seam: precision, channels-last, autocast and cudnn flags decided per device from a run's own Runtime,
and mixed precision / channels-last do not break a CPU fit or inference."""
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision

from fastmask.callbacks.speed import Autocast, ChannelsLast, accelerate
from fastmask.errors import FastmaskError
from fastmask.runtime import (Runtime, autocast_ctx, cpu_bf16_fast, cpu_channels_last_fast, cpu_flags, default_runtime,
                              inference_model, prepare_backends, resolve_precision, tune_allocator, use, use_channels_last)
import fastmask.runtime as runtime_mod


def test_auto_on_cpu_is_fp32_with_channels_last_where_it_pays(tmp_path):
    assert resolve_precision(Runtime(), 'cpu') == 'fp32' and use_channels_last(Runtime(), 'cpu') is cpu_channels_last_fast()
    new, avx2, old = tmp_path / 'new', tmp_path / 'avx2', tmp_path / 'old'   # the flags are read once per file (cached)
    new.write_text('processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n')
    avx2.write_text('processor : 0\nflags : fpu sse avx2\n')
    old.write_text('processor : 0\nflags : fpu sse sse4_2\n')
    assert cpu_bf16_fast(str(new)) and cpu_channels_last_fast(str(new))
    assert not cpu_bf16_fast(str(avx2)) and cpu_channels_last_fast(str(avx2))        # bf16 emulated there: fp32
    assert not cpu_bf16_fast(str(old)) and not cpu_channels_last_fast(str(old))
    assert cpu_flags(str(tmp_path / 'none')) == frozenset()
    assert resolve_precision(Runtime(precision='bf16'), 'cpu') == 'bf16' and use_channels_last(Runtime(channels_last=True), 'cpu')


@pytest.mark.parametrize('capability,expected', [((7, 0), 'fp16'), ((7, 5), 'fp16'), ((8, 0), 'bf16'), ((9, 0), 'bf16')])
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    "V100 / T4 (capability 7.x) get fp16 with loss scaling, not the emulated bf16 `is_bf16_supported()` reports."
    monkeypatch.setattr(runtime_mod, 'cuda_capability', lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)   # what torch says on a V100
    assert resolve_precision(Runtime(), 'cuda') == expected
    assert resolve_precision(Runtime(precision='fp32'), 'cuda') == 'fp32' and use_channels_last(Runtime(), 'cuda')
    assert resolve_precision(Runtime(), 'mps') == 'fp16'


def test_runtime_is_checked_and_scoped():
    with pytest.raises(FastmaskError, match='precision'): Runtime(precision='fp8')
    assert Runtime().changed(precision=None, cache=False) == Runtime(cache=False)
    assert default_runtime() == Runtime()
    with use(precision='fp32', num_workers=0) as rt:
        assert default_runtime() is rt and rt.precision == 'fp32' and rt.num_workers == 0
        with use(cache=False): assert default_runtime() == Runtime(precision='fp32', num_workers=0, cache=False)
    assert default_runtime() == Runtime()


def test_runtime_reads_old_config_records():
    old = dict(recipe=dict(precision='bf16', channels_last=False), options=dict(num_workers=0, speed=dict(cache=False, heap_malloc=True)))
    assert Runtime.from_config(old) == Runtime(precision='bf16', channels_last=False, cache=False, num_workers=0)
    assert Runtime.from_config(dict(runtime=Runtime(compile=True).to_dict())) == Runtime(compile=True)


def test_cudnn_flags_fast_by_default_deterministic_on_request():
    old = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        assert prepare_backends(Runtime(), 'cuda') == dict(deterministic=False, benchmark=True)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        assert prepare_backends(Runtime(deterministic=True), 'cuda') == dict(deterministic=True, benchmark=False)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert prepare_backends(Runtime(), 'cpu')['benchmark'] is False
    finally: torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old


def test_allocator_tuning_keeps_results():
    tune_allocator()
    x = torch.arange(64 * 3 * 64 * 64, dtype=torch.float32).view(64, 3, 64, 64)
    assert float((x * 2).sum()) == float(x.sum()) * 2


def _learner(tiny_demo, **kw):
    from fastmask.recipes.registry import get_recipe, override, quick
    from fastmask.runners.train import build_learner
    r = override(quick(get_recipe('baseline_mobilenetv2')), size=32, bs=16, epochs=1)
    return build_learner(r, tiny_demo, 'all', runtime=Runtime(num_workers=0, **kw))


def _bf16_cpu_ok() -> bool:
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16): torch.nn.Conv2d(3, 4, 3)(torch.rand(1, 3, 8, 8))
        return True
    except Exception: return False


def test_fp32_cpu_learner_has_no_speed_callbacks(tiny_demo):
    learn = _learner(tiny_demo, precision='fp32', channels_last=False)
    assert learn.speed == dict(device='cpu', precision='fp32', channels_last=False, compile=False, deterministic=False)
    assert not any(isinstance(c, (Autocast, ChannelsLast)) for c in learn.cbs)


def test_autocast_state_never_outlives_a_failed_batch(tiny_demo):
    "A forward that raises inside autocast leaves no autocast behind (a study's failed member must not taint the next)."
    learn = _learner(tiny_demo, precision='bf16', channels_last=False)
    def boom(self, *a): raise RuntimeError('boom')
    learn.add_cb(type('Boom', (Callback,), dict(after_pred=boom))())
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, 1e-3)
    assert not torch.is_autocast_enabled('cpu')
    assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cuda_mixed_precision_scales_fp16_and_wraps_the_forward(tiny_demo, monkeypatch):
    "On a (stand-in) V100, `auto` is fp16 with a GradScaler, and autocast lives in the forward, not across callbacks."
    monkeypatch.setattr(runtime_mod, 'cuda_capability', lambda device=None: (7, 0))
    learn = _learner(tiny_demo, precision='fp32')
    accelerate(learn, Runtime(), device='cuda')
    cb = next(c for c in learn.cbs if isinstance(c, Autocast))
    assert learn.speed['precision'] == 'fp16' and cb.dtype == torch.float16 and cb.device_type == 'cuda'
    assert cb.before_batch.__func__ is not MixedPrecision.before_batch and cb.after_loss.__func__ is not MixedPrecision.after_loss
    assert cb.loss_scaling and not Autocast(torch.bfloat16, 'cuda').loss_scaling and not Autocast(torch.float16, 'cpu').loss_scaling


@pytest.mark.skipif(not _bf16_cpu_ok(), reason='bf16 autocast unsupported on this CPU build')
def test_bf16_channels_last_fit_on_cpu(tiny_demo):
    learn = _learner(tiny_demo, precision='bf16', channels_last=True)
    assert learn.speed['precision'] == 'bf16' and learn.speed['channels_last']
    learn.fit(1, 1e-3)
    loss = learn.recorder.values[-1][0]
    assert np.isfinite(loss)
    w = next(p for p in learn.model.parameters() if p.ndim == 4)
    assert w.dtype == torch.float32 and w.is_contiguous(memory_format=torch.channels_last)
    p, _ = learn.get_preds(dl=learn.dls.valid, act=lambda x: torch.softmax(x.float(), -1))
    assert p.dtype == torch.float32 and torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-3)


def test_fp16_refused_on_cpu(tiny_demo):
    with pytest.raises(ValueError, match='GPU'): _learner(tiny_demo, precision='fp16')


def test_compile_flag_keeps_state_dict_keys():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    m(torch.rand(1, 3, 8, 8))
    keys = list(m.state_dict())
    mm = inference_model(m, Runtime(compile=True, compile_backend='eager'), 'cpu')
    assert list(mm.state_dict()) == keys
    with torch.no_grad(), autocast_ctx(Runtime(), 'cpu'): assert mm(torch.rand(2, 3, 8, 8)).shape == (2, 2)


def test_building_a_learner_leaves_cudnn_fast_unless_deterministic(tiny_demo):
    "fastai's `set_seed(reproducible=True)` in every build used to force deterministic, slow kernels on the process."
    old = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        _learner(tiny_demo)
        assert not torch.backends.cudnn.deterministic
        _learner(tiny_demo, deterministic=True)
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally: torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old
