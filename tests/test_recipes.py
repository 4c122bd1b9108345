"""Tests of the recipe catalogue: every registered recipe runs end to end in quick mode; early stopping; the report's names."""
import json

import pytest
from timm.layers import freeze_batch_norm_2d

from fastmask.errors import MissingExtraError
from fastmask.labels import REPORT_AGE_CUT, task_names
from fastmask.losses import get_loss
from fastmask.optim import get_opt
from fastmask.recipes.registry import Recipe, get_recipe, list_recipes, quick, resolve
from fastmask.runners.registry import get_runner
from fastmask.runners.train import build_learner, fit_task
from fastmask.runners.run import run_recipe

REPORT = ['baseline_mobilenetv2', 'split_mobilenetv2', 'split_effnet_b0', 'split_effnet_b1', 'split_effnet_b2',
          'split_effnet_b3', 'split_densenet121', 'split_resnext50', 'swa_effnet_b3', 'swa_densenet121', 'swa_resnext50',
          'f1loss_age', 'cef1_age', 'optim_adam', 'optim_adamw', 'optim_adamp', 'optim_madgrad', 'optim_madgrad_1e6']
ALL = [r.name for r in list_recipes()]


def _sweep(name: str) -> Recipe:
    "The smoke-run version of a recipe: quick mode at 32 px, one epoch, SWA averaging that one epoch."
    r = get_recipe(name)
    return resolve(r, quick=True, size=32, epochs=1, swa_start=0 if r.swa_start is not None else None)


@pytest.mark.slow
@pytest.mark.parametrize('name', ALL)
def test_every_recipe_runs_in_quick_mode(name, tiny_demo, tmp_path):
    r = get_recipe(name)
    if r.kind != 'train': pytest.skip(f"kind '{r.kind}': run end to end by its runner's own tests")
    try: run_dir = run_recipe(_sweep(name), tiny_demo, out=tmp_path, num_workers=0)
    except MissingExtraError as e: pytest.skip(str(e))
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['status'] == 'finished' and summary['recipe'] == name
    for t in r.tasks: assert (run_dir / f'model_{t}.pth').is_file() and (run_dir / f'metrics_{t}.csv').is_file()
    if set(r.tasks) in ({'all'}, {'mask', 'gender', 'age'}):
        assert 0 <= summary['valid_f1'] <= 1 and (run_dir / 'submission.csv').is_file()
    if r.swa_start is not None:  # the averaged model was validated and logged
        assert all((run_dir / f'metrics_{t}.csv').read_text().splitlines()[-1].startswith('swa,') for t in r.tasks)


@pytest.mark.parametrize('name', ALL)
def test_every_recipe_resolves(name):
    "Names of losses, optimizers, architectures and task overrides exist; quick mode keeps SWA inside the fit."
    r = get_recipe(name)
    assert callable(get_runner(r.kind))  # an unknown runner kind fails here, it is never skipped
    assert r.description and '\n' not in r.description
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    for t in r.tasks:
        rt = r.for_task(t)
        get_loss(rt.loss, len(task_names(t)), **dict(rt.loss_params))
        try: get_opt(rt.opt)
        except MissingExtraError: pass
    q = quick(r)
    if q.swa_start is not None: assert q.swa_start < q.epochs
    if q.patience is not None: assert q.patience < q.epochs


def test_the_reports_catalogue():
    rs = {r.name: r for r in list_recipes()}
    assert set(REPORT) <= set(rs)
    for n in REPORT[1:11]:
        assert rs[n].tasks == ('mask', 'gender', 'age') and rs[n].balanced_mask and rs[n].age_cut == REPORT_AGE_CUT
        assert rs[n].loss == 'ce'
    assert {rs[f'split_{s}'].arch for s in ('effnet_b3', 'densenet121', 'resnext50')} == \
        {'efficientnet_b3', 'densenet121', 'resnext50_32x4d'}
    for n in ('swa_effnet_b3', 'swa_densenet121', 'swa_resnext50'):
        split = rs[n.replace('swa_', 'split_')]
        assert rs[n].swa_start is not None and rs[n].arch == split.arch and split.swa_start is None
    assert rs['f1loss_age'].for_task('age').loss == 'f1' and rs['f1loss_age'].for_task('mask').loss == 'ce'
    assert rs['cef1_age'].for_task('age').loss == 'ce_f1' and rs['cef1_age'].for_task('gender').loss == 'ce'
    optims = [rs[n] for n in REPORT if n.startswith('optim_')]
    assert [r.opt for r in optims] == ['adam', 'adamw', 'adamp', 'madgrad', 'madgrad']
    for r in optims:
        assert (r.arch, r.tasks, r.bs, r.schedule, r.patience) == ('efficientnet_b3', ('all',), 64, 'constant', 10)
        assert r.swa_start is not None and r.lr == (1e-6 if r.name.endswith('1e6') else 1e-5)
    assert rs['f1loss_age'].report and rs['swa_effnet_b3'].report


@pytest.mark.parametrize('monitor', ['f1', 'valid_loss'])
def test_early_stopping_stops_when_nothing_improves(monitor, tiny_demo, tmp_path):
    "lr 0 and frozen BatchNorm: every epoch scores the same, so the fit stops after patience + 1 epochs."
    r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=6, lr=0.0, patience=2, monitor=monitor)
    learn = build_learner(r, tiny_demo)
    learn.model = freeze_batch_norm_2d(learn.model)
    fit_task(learn, tmp_path)
    assert len(learn.recorder.values) == 3
    assert len((tmp_path / 'metrics_all.csv').read_text().splitlines()) == 1 + 3


def test_same_settings_ignores_only_the_words():
    from dataclasses import replace
    r = get_recipe('cpu_split_lite0')
    assert r.same_settings(replace(r, description='reworded', report='LB 0.7'))
    assert not r.same_settings(replace(r, lr=r.lr * 2)) and not r.same_settings(replace(r, name='other'))
