"""The expected-time line: said once per fit, within its first epoch, from timed training batches."""
from fastai.callback.core import Callback

from fastmask.callbacks.eta import ExpectedTime, expected_seconds, human_seconds
from fastmask.recipes.registry import get_recipe, override, quick
from fastmask.runners.train import build_learner
from fastmask.runtime import Runtime


def test_expected_seconds_and_words():
    assert expected_seconds(0.5, 10, 3, 4) == 0.5 * (10 + 1) * 4
    assert [human_seconds(s) for s in (42.4, 200, 3900)] == ['42 s', '3 min 20 s', '1 h 05 min']


def test_line_said_once_within_the_first_epoch(tiny_demo):
    r = override(quick(get_recipe('baseline_mobilenetv2')), size=32, bs=8, epochs=2)
    learn = build_learner(r, tiny_demo, 'all', runtime=Runtime(num_workers=0))
    lines, epochs_done = [], []
    class Ends(Callback):
        def after_epoch(self): epochs_done.append(len(lines))
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-3, cbs=[ExpectedTime(prefix='all: ', log=lambda m, **_: lines.append(m)), Ends()])
    assert len(lines) == 1 and epochs_done[0] == 1                     # before the first epoch ended
    assert lines[0].startswith('all: expected time: about ') and 'for 2 epochs' in lines[0]
    assert f'{len(learn.dls.train)} + {len(learn.dls.valid)} batches an epoch' in lines[0]
    lines.clear()
    learn.add_cb(ExpectedTime(warmup=0, measure=1, log=lambda m, **_: lines.append(m)))
    with learn.no_bar(), learn.no_logging(): learn.lr_find(num_it=5, show_plot=False)   # no line under lr_find
    assert lines == []
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)                      # the same callback in a fit
    assert len(lines) == 1 and 'on the first 1,' in lines[0]
