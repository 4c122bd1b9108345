"""`fastmask lr-find`: fastai's lr_find on a recipe's learner, suggestions, plot, and state left untouched."""
import torch
from fastai.callback.core import Callback
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.tools.lrfind import find_lr, plot_lr_find
from fastmask.plots import save_figure
from fastmask.recipes.registry import resolve
from fastmask.runners.train import build_learner


class Spy(Callback):
    "Follows fastai's rule for callbacks that must stay off under lr_find; counts the epochs it saw."
    def before_fit(self):
        self.run = not hasattr(self.learn, 'lr_finder') and not hasattr(self, 'gather_preds')
        self.epochs, self.was_off = 0, not self.run  # fastai turns `run` back on after the fit
    def after_epoch(self): self.epochs += 1


def test_find_lr_suggests_and_restores(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    learn = build_learner(resolve('baseline_mobilenetv2', quick=True, size=32, bs=16), tiny_demo)
    spy = Spy()
    learn.add_cb(spy)
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    sugg = find_lr(learn, num_it=25)
    assert set(sugg) == {'valley', 'slide', 'minimum', 'steep'}
    assert all(1e-7 <= v <= 10 for v in sugg.values())
    assert spy.epochs == 0 and spy.was_off  # disabled while lr_find ran
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # lr_find restores the weights
    assert not (tmp_path / 'models').exists() and str(learn.path) == '.'
    assert len(learn.recorder.lrs) >= 25
    png = save_figure(plot_lr_find(learn, sugg), tmp_path / 'lr.png')
    with Image.open(png) as im: assert im.format == 'PNG'


def test_lr_find_command(tiny_demo, tmp_path):
    out = tmp_path / 'lr.png'
    res = CliRunner().invoke(app, ['lr-find', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--quick', '--size', '32',
                                   '--num-it', '25', '--out', str(out)])
    assert res.exit_code == 0, res.output
    assert 'valley' in res.output and 'steep' in res.output and out.is_file()
    res = CliRunner().invoke(app, ['lr-find', 'nope_recipe', '--data', str(tiny_demo)])
    assert res.exit_code == 1 and 'unknown recipe' in res.output
    res = CliRunner().invoke(app, ['lr-find', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--task', 'colour', '--quick'])
    assert res.exit_code == 1 and "task 'colour'" in res.output and 'Traceback' not in res.output
