"""`fastmask tune`: search spaces, metrics, shared studies, pruning and `--show`, on a 16-person demo set."""
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna  # the `tune` extra (CI installs it with `full`)
import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import MissingExtraError
from fastmask.io import read_json
from fastmask.recipes import resolve
from fastmask.tools.tune import PruningCallback, TuneError, TuneInterrupted, open_study, resolve_metric, tune
from fastmask.tools.tuneshow import show_study
from fastmask.tools.tunespace import SpaceError, apply_params, default_space, load_space, need_optuna

TINY = ['--quick', '--epochs', '1', '--size', '32', '--workers', '0']
LR = {'lr': {'type': 'float', 'low': 1e-3, 'high': 1e-1, 'log': True}}
ALL_TASKS = ('all', 'mask', 'gender', 'age')


def fastmask(*args, cwd=None):
    "The CLI in a subprocess, as a user runs it."
    return subprocess.Popen([sys.executable, '-m', 'fastmask', *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=dict(os.environ, PYTHONWARNINGS='ignore'))


def tagged_runs(root) -> dict[int, dict]:
    "Trial number -> tune tag of every run folder under `root`."
    return {c['tags']['tune']['trial']: dict(c['tags']['tune'], run_dir=p.parent)
            for p in root.glob('*/*/config.json') for c in [read_json(p)] if 'tags' in c}


# --- search spaces ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text,msg', [
    ('{"lrr": {"type": "float", "low": 0.1, "high": 1}}', "unknown field 'lrr'"),
    ('{"lr": {"type": "float", "low": 0.1, "high": 0.01}}', "field 'lr': `low <= high`"),
    ('{"lr": {"type": "float", "low": 0, "high": 0.1, "log": true}}', "field 'lr': `low > 0`"),
    ('{"lr": {"type": "uniform", "low": 0, "high": 0.1}}', "field 'lr': type must be"),
    ('{"lr": {"type": "float", "low": 0.001}}', "field 'lr': type float needs 'high'"),
    ('{"lr": {"type": "float", "low": 0.001, "hi": 1}}', "field 'lr': unknown key 'hi'"),
    ('{"bs": {"type": "float", "low": 16, "high": 64}}', "field 'bs': takes an integer"),
    ('{"bs": {"type": "categorical", "choices": [16, 1.5]}}', "field 'bs': choice 1.5: not an integer"),
    ('{"bs": {"type": "categorical", "choices": []}}', "field 'bs': choices must be a non-empty list"),
    ('{"loss": {"type": "categorical", "choices": ["ce", "hinge"]}}', "unknown loss 'hinge'"),
    ('{"loss_params.f1_weight": {"type": "float", "low": 0.1, "high": 0.9}}', "unknown field 'loss_params.f1_weight'"),
    ('{"valid_pct": {"type": "float", "low": 0.1, "high": 0.3}}', "unknown field 'valid_pct'"),
    ('{"lr": {"type": "float", "low": 0.001, "high": 0.1,}}', 'not valid JSON'),
    ('[1, 2]', 'expected a non-empty mapping'),
])
def test_space_file_errors_are_one_line(tmp_path, text, msg):
    f = tmp_path / 'space.json'
    f.write_text(text)
    with pytest.raises(SpaceError) as e: load_space(f, resolve('baseline_mobilenetv2'))
    assert str(e.value).startswith(f'{f}: ') and msg in str(e.value) and '\n' not in str(e.value)


def test_yaml_space_and_loss_parameters(tmp_path):
    f = tmp_path / 'space.yaml'
    f.write_text('loss_params.f1_weight: {type: float, low: 0.2, high: 0.8}\nbs: {type: categorical, choices: [16, 32]}\n')
    space = load_space(f, resolve('top_f1focal_resnext50'))
    assert space['loss_params.f1_weight'] == optuna.distributions.FloatDistribution(0.2, 0.8)
    assert space['bs'].choices == (16, 32)
    f.write_text('lr: {type: float, low: [}\n')
    with pytest.raises(SpaceError, match='not valid YAML'): load_space(f, resolve('baseline_mobilenetv2'))


def test_default_space_per_family_and_fixed_fields():
    base = default_space(resolve('baseline_mobilenetv2', quick=True))
    assert {'lr', 'wd', 'label_smoothing', 'age_cut', 'size', 'bs'} <= set(base) and 'loss_params.f1_weight' not in base
    focal = default_space(resolve('top_f1focal_resnext50'))
    assert 'loss_params.f1_weight' in focal and 'label_smoothing' not in focal        # its loss has no eps
    assert 'swa_lr' in default_space(resolve('swa_effnet_b3')) and 'swa_lr' not in base
    fixed = default_space(resolve('baseline_mobilenetv2', quick=True, size=32, lr=0.01), fixed={'size': 32, 'lr': 0.01})
    assert 'size' not in fixed and 'lr' not in fixed                                   # the command line fixed them


def test_apply_params_sets_fields_losses_and_extras():
    r = apply_params(resolve('baseline_mobilenetv2'), {'lr': 0.01, 'label_smoothing': 0.1, 'age_cut': 58})
    assert (r.lr, r.loss, dict(r.loss_params), r.age_cut) == (0.01, 'label_smoothing', {'eps': 0.1}, 58)
    r = apply_params(resolve('top_f1focal_resnext50'), {'loss_params.f1_weight': 0.7})
    assert dict(r.loss_params) == {'f1_weight': 0.7, 'gamma': 2.0}
    assert apply_params(resolve('top_f1focal_resnext50'), {'loss': 'ce'}).loss_params == ()  # ce takes no gamma
    assert apply_params(resolve('top_cutmix_effnet_b3'), {'extras.cutmix_p': 0.5}).cutmix_p == 0.5


@pytest.mark.parametrize('args,msg', [
    (['--space', 'SPACE'], "SPACE: unknown field 'lrr' (tunable here: arch, "),
    (['--metric', 'valid_f1_age', '--tasks', 'mask'], '--metric valid_f1_age: recipe baseline_mobilenetv2 trains mask on this data: choose valid_f1_mask'),
    (['--pruner', 'hyperband'], '--pruner hyperband: unknown (one of median, halving, none)'),
    (['--storage', 'tune.db'], '--storage tune.db: not a database URL'),
])
def test_cli_errors_are_one_line(tmp_path, tiny_demo, args, msg):
    (tmp_path / 'space.json').write_text('{"lrr": {"type": "float", "low": 0.1, "high": 1}}')
    args = [str(tmp_path / 'space.json') if a == 'SPACE' else a for a in args]
    r = CliRunner().invoke(app, ['tune', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--out', str(tmp_path), *args])
    lines = [l for l in r.stderr.splitlines() if l.startswith('error:')]
    assert r.exit_code == 1 and len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert lines[0].startswith('error: ' + msg.replace('SPACE', str(tmp_path / 'space.json')))
    assert not (tmp_path / 'baseline_mobilenetv2').exists()                             # nothing trained
    r = CliRunner().invoke(app, ['tune', '--data', str(tiny_demo)])
    assert r.exit_code == 1 and r.stderr.startswith('error: RECIPE: missing')


def test_missing_optuna_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, 'optuna', None)
    with pytest.raises(MissingExtraError, match=r"pip install 'fastmask\[tune\]'"): need_optuna()


# --- metrics and studies ----------------------------------------------------------------------------------------

def test_metric_defaults_and_fallbacks():
    split, base = resolve('split_mobilenetv2'), resolve('baseline_mobilenetv2')
    assert resolve_metric(base, ALL_TASKS) == ('valid_f1', None)
    assert resolve_metric(split, ALL_TASKS) == ('valid_f1', None)                      # every task fit reports
    assert resolve_metric(split, ALL_TASKS, 'valid_f1_age') == ('valid_f1_age', 'age')  # only the age fit reports
    assert resolve_metric(base, ALL_TASKS, 'valid_f1_age') == ('valid_f1_age', None)
    assert resolve_metric(resolve('split_mobilenetv2', tasks=('mask',)), ALL_TASKS) == ('valid_f1_mask', 'mask')
    assert resolve_metric(split, ('mask',)) == ('valid_f1_mask', 'mask')                # a mask-only labels CSV
    assert resolve_metric(resolve('external_age_model'), ALL_TASKS)[0] == 'valid_f1'
    with pytest.raises(TuneError, match='choose one of valid_f1_mask, valid_f1_gender'):
        resolve_metric(resolve('split_mobilenetv2', tasks=('mask', 'gender')), ALL_TASKS)
    with pytest.raises(TuneError, match='--metric valid_f1_age: recipe split_mobilenetv2 trains mask'):
        resolve_metric(resolve('split_mobilenetv2', tasks=('mask',)), ALL_TASKS, 'valid_f1_age')
    with pytest.raises(TuneError, match='unknown'): resolve_metric(base, ALL_TASKS, 'accuracy')


def test_resume_and_settings_rules(tmp_path, tiny_demo):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(TuneError, match=r"--storage .*x\.db does not exist"):
        tune('baseline_mobilenetv2', tiny_demo, tmp_path, storage=url, study_name='s', resume=True, quick=True)
    assert not (tmp_path / 'x.db').exists() and not (tmp_path / 'baseline_mobilenetv2').exists()
    settings = dict(recipe=resolve('baseline_mobilenetv2').to_dict(), metric='valid_f1', space={'lr': 'x'})
    open_study(url, 's', settings=settings)
    assert open_study(url, 's', settings=json.loads(json.dumps(settings))).study_name == 's'  # a worker joins
    with pytest.raises(TuneError, match=r"another recipe\.epochs \(10, not 3\)"):
        open_study(url, 's', settings=dict(settings, recipe=resolve('baseline_mobilenetv2', epochs=3).to_dict()))
    with pytest.raises(TuneError, match="no such study in .*it has: s"): open_study(url, 'other', resume=True)
    with pytest.raises(TuneError, match='combines or sweeps'): tune('sweep_age_cut', tiny_demo, tmp_path, quick=True)
    with pytest.raises(TuneError, match='not a database URL'): open_study('tune.db', 's')


# --- trials -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def shared_study(tmp_path_factory, tiny_demo):
    "Two worker processes share one SQLite study, two trials each."
    tmp = tmp_path_factory.mktemp('shared')
    (tmp / 'space.json').write_text(json.dumps(LR))
    url = f"sqlite:///{tmp / 'study.db'}"
    args = ['tune', 'baseline_mobilenetv2', '--data', tiny_demo, '--out', tmp / 'runs', *TINY, '--trials', 2,
            '--space', tmp / 'space.json', '--pruner', 'none', '--storage', url, '--study-name', 'shared']
    procs = [fastmask(*args) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (o, e) in zip(procs, outs): assert p.returncode == 0, e[-3000:]
    return tmp, url, outs


def test_workers_share_one_study(shared_study):
    tmp, url, outs = shared_study
    study = optuna.load_study(study_name='shared', storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    runs = tagged_runs(tmp / 'runs')
    assert sorted(runs) == [0, 1, 2, 3]                                                # distinct trial numbers
    for t in study.trials:
        tag = runs[t.number]
        assert tag['study'] == 'shared' and tag['storage'] == url and tag['params'] == t.params
        assert t.user_attrs['run_dir'] == str(tag['run_dir'])
        assert t.value == read_json(tag['run_dir'] / 'summary.json')['valid_f1']      # an ordinary finished run
    assert [sum(l.startswith('trial ') for l in o.splitlines()) for o, _ in outs] == [2, 2]  # each worker ran two


def test_show_prints_trials_and_writes_plots(shared_study):
    tmp, url, _ = shared_study
    p = fastmask('tune', '--show', '--storage', url, '--study-name', 'shared', '--out', tmp / 'show')
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    pngs = sorted((tmp / 'show' / 'tune' / 'shared').glob('*.png'))
    assert [f.name for f in pngs] == ['history.png', 'importances.png', 'parallel.png']
    assert all(f.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' for f in pngs)
    assert out.count('complete') == 4 and 'study shared: 4 trial(s)' in out


def test_pruned_trial_stops_early_and_study_goes_on(tmp_path, tiny_demo):
    lines = []
    study = tune('baseline_mobilenetv2', tiny_demo, tmp_path, trials=2, space=LR, quick=True,
                 overrides=dict(epochs=3, size=32), pruner=optuna.pruners.ThresholdPruner(lower=2.0),
                 study_name='p', log=lines.append)                                      # F1 < 2: prune at once
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    for t in study.trials:
        run = Path(t.user_attrs['run_dir'])
        assert run.parent == tmp_path / 'baseline_mobilenetv2' and list(t.intermediate_values) == [0]
        assert len(pd.read_csv(run / 'metrics_all.csv')) == 1 < 3                       # one epoch of three
        assert not (run / 'summary.json').exists()                                      # left as an unfinished run
        assert read_json(run / 'config.json')['tags']['tune']['trial'] == t.number
    assert [l.split(':')[1].split()[0] for l in lines if l.startswith('trial ')] == ['pruned', 'pruned']
    assert (tmp_path / 'tune' / 'p.db').is_file()                                       # the default storage
    _, df, files, notes = show_study(None, 'p', tmp_path)
    assert files == [] and notes == ['no completed trial yet: no plots'] and list(df['state']) == ['pruned'] * 2


def test_split_recipe_steps_increase_across_tasks(tmp_path, tiny_demo):
    kw = dict(trials=1, space=LR, quick=True, pruner='none', log=print)
    study = tune('split_mobilenetv2', tiny_demo, tmp_path, study_name='all', overrides=dict(epochs=1, size=32), **kw)
    t, = study.trials
    run = Path(t.user_attrs['run_dir'])
    f1 = [v for task in ('mask', 'gender', 'age') for v in pd.read_csv(run / f'metrics_{task}.csv')['f1_score']]
    assert t.intermediate_values == dict(enumerate(f1))                                # step = task index + epoch
    study = tune('split_mobilenetv2', tiny_demo, tmp_path, study_name='gender', metric='valid_f1_gender',
                 overrides=dict(epochs=1, size=32, tasks=('mask', 'gender')), **kw)
    t, = study.trials
    run = Path(t.user_attrs['run_dir'])
    assert t.intermediate_values == {0: pd.read_csv(run / 'metrics_gender.csv')['f1_score'][0]}  # the mask fit is silent
    assert t.value == read_json(run / 'summary.json')['valid_f1_gender']
    _, _, files, notes = show_study(None, 'gender', tmp_path)
    assert [f.name for f in files] == ['history.png', 'parallel.png'] and 'importances.png skipped' in notes[0]


def test_pruning_callback_is_off_under_lr_find_and_prunes_a_fit(tiny_demo):
    from fastmask.callbacks.validation import ValidateLast
    from fastmask.runners.train import build_learner

    class Trial:
        def __init__(self): self.reports = []
        def report(self, v, step): self.reports.append((step, v))
        def should_prune(self): return True

    learn = build_learner(resolve('baseline_mobilenetv2', quick=True, size=32, bs=8), tiny_demo)
    trial = Trial()
    learn.add_cb(PruningCallback(trial))
    with learn.no_bar(): learn.lr_find(num_it=5, show_plot=False)
    assert trial.reports == []                                                          # lr_find: the callback is off
    with pytest.raises(optuna.TrialPruned, match='pruned at step 0'), learn.no_bar(): learn.fit(2, 1e-3)
    assert [s for s, _ in trial.reports] == [0] and len(learn.recorder.values) == 1     # stopped after one epoch
    trial.reports.clear()
    learn.add_cb(ValidateLast(1))       # epochs without validation report nothing, so prune nothing; steps go on
    with pytest.raises(optuna.TrialPruned, match='pruned at step 4'), learn.no_bar(): learn.fit(3, 1e-3)
    assert [s for s, _ in trial.reports] == [4]                                          # the first fit's 2, then 2


def test_ctrl_c_names_the_command_that_continues(tmp_path, tiny_demo):
    class CtrlC(optuna.pruners.BasePruner):
        def prune(self, study, trial): raise KeyboardInterrupt

    with pytest.raises(TuneInterrupted) as e:
        tune('baseline_mobilenetv2', tiny_demo, tmp_path, trials=3, space=LR, quick=True,
             overrides=dict(epochs=2, size=32), pruner=CtrlC(), study_name='c', log=print)
    assert f"--storage sqlite:///{tmp_path / 'tune' / 'c.db'} --study-name c --resume" in str(e.value)
    study = optuna.load_study(study_name='c', storage=f"sqlite:///{tmp_path / 'tune' / 'c.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]             # no further trial started
