"""Validation in the last epochs only: skipped passes run no batch, log NaN, and the best epoch is a validated one."""
import math

import pandas as pd
import pytest
from fastai.callback.core import Callback
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

from fastmask.callbacks.eta import expected_seconds
from fastmask.callbacks.validation import ValidateLast, validated_epochs
from fastmask.recipes.registry import get_recipe, override, quick
from fastmask.runners.train import build_learner, fit_task, task_callbacks
from fastmask.runtime import Runtime


class CountValid(Callback):
    "Validation batches run in each epoch."
    def before_fit(self): self.per_epoch = []
    def before_epoch(self): self.per_epoch.append(0)
    def after_batch(self):
        if not self.training: self.per_epoch[-1] += 1


@pytest.fixture
def learn(tiny_demo):
    r = override(quick(get_recipe('baseline_mobilenetv2')), size=32, bs=8)
    return build_learner(r, tiny_demo, 'gender', runtime=Runtime(num_workers=0))


def test_validated_epochs():
    assert [validated_epochs(6, k) for k in (0, 1, 2, 6, 9)] == [6, 1, 2, 6, 6]
    assert validated_epochs(6, 2, start=5) == 1 and validated_epochs(6, 0, start=4) == 2   # a resumed fit
    assert expected_seconds(1.0, 10, 3, 4, validated=1) == 40 + 1 and expected_seconds(1.0, 10, 3, 4) == 44
    with pytest.raises(ValueError, match='at least one'): ValidateLast(0)


def test_only_the_last_epochs_validate(learn, tmp_path):
    learn.path, learn.model_dir = tmp_path, '.'
    count, saver = CountValid(), SaveModelCallback(monitor='f1_score', fname='best')
    stop = EarlyStoppingCallback(monitor='f1_score', patience=1)
    with learn.no_bar(), learn.no_logging(): learn.fit(4, 1e-3, cbs=[ValidateLast(2), count, saver, stop])
    n_valid = len(learn.dls.valid)
    assert n_valid > 0 and count.per_epoch == [0, 0, n_valid, n_valid]
    vals = [dict(zip(learn.recorder.metric_names[1:], v)) for v in learn.recorder.values]
    assert all(math.isnan(v['valid_loss']) and math.isnan(v['f1_score']) for v in vals[:2])
    assert all(0 <= v['f1_score'] <= 1 and v['valid_loss'] > 0 for v in vals[2:])
    assert saver.best == max(v['f1_score'] for v in vals[2:])     # the trackers only saw the validated epochs
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=[ValidateLast(1), count])   # one epoch: validated
    assert count.per_epoch == [n_valid]


def test_get_preds_and_lr_find_are_untouched(learn):
    learn.add_cb(ValidateLast(1))
    with learn.no_bar(), learn.no_logging():
        learn.fit(3, 1e-3)                                  # epoch 0 of a later 3-epoch fit would be skipped
        learn.epoch = 0
        p, y = learn.get_preds(dl=learn.dls.valid)
        learn.lr_find(num_it=3, show_plot=False)
    assert len(p) == len(y) == len(learn.dls.valid_ds) and len(learn.recorder.lrs) > 0


def test_recipe_field_reaches_the_metrics_log(tiny_demo, tmp_path):
    r = override(quick(get_recipe('baseline_mobilenetv2')), size=32, bs=8, epochs=3, valid_last=1)
    assert any(isinstance(cb, ValidateLast) and cb.epochs == 1 for cb in task_callbacks(r, 'gender', tmp_path))
    assert not any(isinstance(cb, ValidateLast) for cb in task_callbacks(override(r, valid_last=0), 'gender', tmp_path))
    learn = build_learner(r, tiny_demo, 'gender', runtime=Runtime(num_workers=0))
    with learn.no_bar(), learn.no_logging(): fit_task(learn, tmp_path)
    log = pd.read_csv(tmp_path / 'metrics_gender.csv')
    assert len(log) == 3 and log['valid_loss'][:2].isna().all() and log['valid_loss'][2:].notna().all()
    assert (tmp_path / 'model_gender.pth').is_file()
