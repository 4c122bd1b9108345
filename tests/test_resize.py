"""Progressive resizing: smaller training batches early, full size from `resize_until` on and for every validation batch."""
import pytest
import torch
from fastai.callback.core import Callback

from fastmask.callbacks.resize import ProgressiveResize, resize_at
from fastmask.errors import RecipeError
from fastmask.recipes import resolve
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime


def test_resize_at_grows_in_steps_to_the_full_size():
    sizes = [resize_at(p / 100, 160, 0.75, 0.5) for p in range(101)]
    assert sizes[0] == 128 and sizes[50:] == [160] * 51 and sizes == sorted(sizes)
    assert all(s % 16 == 0 for s in sizes) and len(set(sizes)) == 3           # 128, 144, 160
    assert resize_at(0.0, 160, 1.0, 0.5) == 160                               # off
    assert resize_at(0.2, 64, 0.1, 0.5) >= 16                                  # never below one step


def test_bad_settings_are_a_recipe_error():
    with pytest.raises(RecipeError): ProgressiveResize(start=0.0)
    with pytest.raises(RecipeError): ProgressiveResize(until=1.5)


class Sizes(Callback):
    "Record the input size the model sees, per training and validation batch."
    order = ProgressiveResize.order + 1
    def before_fit(self): self.train, self.valid = [], []
    def before_batch(self): (self.train if self.training else self.valid).append(self.learn.xb[0].shape[-1])


def test_training_batches_start_small_and_validation_stays_full_size(tiny_demo):
    r = resolve('baseline_mobilenetv2', quick=True, size=64, bs=8, epochs=4, resize_from=0.5, resize_until=0.5)
    learn = build_learner(r, tiny_demo, 'gender', runtime=Runtime(num_workers=0))
    assert any(isinstance(c, ProgressiveResize) for c in learn.cbs)
    rec = Sizes()
    with learn.no_bar(), learn.no_logging(): learn.fit(4, 1e-3, cbs=[rec])
    n = len(rec.train)
    assert rec.train[0] == 32 and rec.train[-1] == 64 and rec.train == sorted(rec.train)
    assert rec.train[n // 2 + 1:] == [64] * len(rec.train[n // 2 + 1:])
    assert set(rec.valid) == {64}
    plain = build_learner(resolve('baseline_mobilenetv2', quick=True, size=64), tiny_demo, 'gender', runtime=Runtime(num_workers=0))
    assert not any(isinstance(c, ProgressiveResize) for c in plain.cbs)
