"""Speed settings: resolved per device, and mixed precision / channels-last do not break a CPU fit or inference."""
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback

from fastmask import settings as accel
from fastmask.callbacks.speed import Autocast, ChannelsLast, accelerate
from fastmask.settings import (autocast_ctx, configure, cpu_bf16_fast, cpu_channels_last_fast, cpu_flags, inference_model, resolve_precision, speed,
                               tune_allocator, use_channels_last)


def test_auto_on_cpu_is_fp32_with_channels_last_where_it_pays(tmp_path):
    assert resolve_precision('cpu') == 'fp32' and use_channels_last('cpu') is cpu_channels_last_fast()
    new, old = tmp_path / 'new', tmp_path / 'old'   # the flags are read once per file (cached)
    new.write_text('processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n')
    old.write_text('processor : 0\nflags : fpu sse avx2\n')
    assert cpu_bf16_fast(str(new)) and cpu_channels_last_fast(str(new))
    assert not cpu_bf16_fast(str(old)) and not cpu_channels_last_fast(str(old))
    assert cpu_flags(str(tmp_path / 'none')) == frozenset()
    assert resolve_precision('cpu', 'bf16') == 'bf16' and use_channels_last('cpu', True)
    with speed(precision='fp16', channels_last=True, cache=False):
        assert accel.SETTINGS.cache is False and resolve_precision('cpu') == 'fp16' and use_channels_last('cpu')
    assert accel.SETTINGS.cache is True and accel.SETTINGS.precision == 'auto'
    with pytest.raises(ValueError, match='precision'): configure(precision='fp8')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA only')
def test_auto_on_cuda():
    assert resolve_precision('cuda') in ('bf16', 'fp16') and use_channels_last('cuda')


def test_allocator_tuning_keeps_results():
    tune_allocator()
    x = torch.arange(64 * 3 * 64 * 64, dtype=torch.float32).view(64, 3, 64, 64)
    assert float((x * 2).sum()) == float(x.sum()) * 2


def _learner(tiny_demo, **kw):
    from fastmask.recipes.registry import get_recipe, override, quick
    from fastmask.runners.train import build_learner
    r = override(quick(get_recipe('baseline_mobilenetv2')), size=32, bs=16, epochs=1, **kw)
    return build_learner(r, tiny_demo, 'all', num_workers=0)


def _bf16_cpu_ok() -> bool:
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16): torch.nn.Conv2d(3, 4, 3)(torch.rand(1, 3, 8, 8))
        return True
    except Exception: return False


def test_fp32_cpu_learner_has_no_speed_callbacks(tiny_demo):
    learn = _learner(tiny_demo, precision='fp32', channels_last=False)
    assert learn.speed == dict(precision='fp32', channels_last=False, compile=False)
    assert not any(isinstance(c, (Autocast, ChannelsLast)) for c in learn.cbs)


def test_autocast_state_never_outlives_a_failed_batch(tiny_demo):
    "A forward that raises inside bf16 autocast leaves no autocast behind (a study's failed member must not taint the next)."
    learn = _learner(tiny_demo, precision='bf16', channels_last=False)
    def boom(self, *a): raise RuntimeError('boom')
    learn.add_cb(type('Boom', (Callback,), dict(after_pred=boom))())
    with pytest.raises(RuntimeError, match='boom'): learn.fit(1, 1e-3)
    assert not torch.is_autocast_enabled('cpu')
    assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.skipif(not _bf16_cpu_ok(), reason='bf16 autocast unsupported on this CPU build')
def test_bf16_channels_last_fit_on_cpu(tiny_demo):
    learn = _learner(tiny_demo)
    accelerate(learn, precision='bf16', channels_last=True)
    assert learn.speed['precision'] == 'bf16' and learn.speed['channels_last']
    learn.fit(1, 1e-3)
    loss = learn.recorder.values[-1][0]
    assert np.isfinite(loss)
    w = next(p for p in learn.model.parameters() if p.ndim == 4)
    assert w.dtype == torch.float32 and w.is_contiguous(memory_format=torch.channels_last)
    p, _ = learn.get_preds(dl=learn.dls.valid, act=lambda x: torch.softmax(x.float(), -1))
    assert p.dtype == torch.float32 and torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-3)


def test_fp16_refused_on_cpu(tiny_demo):
    with pytest.raises(ValueError, match='CUDA'): accelerate(_learner(tiny_demo), precision='fp16')


def test_compile_flag_keeps_state_dict_keys():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    m(torch.rand(1, 3, 8, 8))
    keys = list(m.state_dict())
    with speed(compile=True, compile_backend='eager'):
        mm = inference_model(m, 'cpu')
    assert list(mm.state_dict()) == keys
    with torch.no_grad(), autocast_ctx('cpu'): assert mm(torch.rand(2, 3, 8, 8)).shape == (2, 2)
