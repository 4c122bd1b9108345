"""The run specification: built once, written as config.json, read back as is, compared by reuse; and the run's own
precision used by validation, the submission, `predict` and `evaluate`."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.inference.predict import predict_paths
from fastmask.recipes import resolve
from fastmask.rundir import RunDir
from fastmask.runners.run import find_run, run_recipe
from fastmask.runspec import DataSpec, RunSpec
from fastmask.runtime import Runtime
from fastmask.sources.open import open_data
from fastmask.tools.evaluate import evaluate
from fastmask.tools.study import run_study

TINY = dict(epochs=1, size=32)


def _bf16_cpu_ok() -> bool:
    try:
        with torch.autocast('cpu', dtype=torch.bfloat16): torch.nn.Conv2d(3, 4, 3)(torch.rand(1, 3, 8, 8))
        return True
    except Exception: return False


def test_spec_round_trips_through_config_json(tiny_demo, tmp_path):
    weights = tmp_path / 'w.pth'
    torch.save({'x': torch.ones(2)}, weights)
    spec = RunSpec.build(resolve('split_mobilenetv2', quick=True, **TINY), tiny_demo, out=tmp_path, fix_labels=True,
                         weights=weights, runtime=Runtime(precision='fp32', num_workers=0), track=None,
                         tags=dict(tune=dict(trial=3)), overrides=dict(TINY, quick=True))
    src, prep, data = spec.data.prepare()
    spec = replace(spec, data=data)
    back = RunSpec.from_config(json.loads(json.dumps(spec.to_config(prep), default=str)))
    assert back == spec and back.same_run(spec) and len(spec.weights_sha256) == 64 and data.fingerprint
    assert spec.same_run(spec.with_recipe(replace(spec.recipe, description='reworded', report='LB 1.0')))
    assert spec.same_run(replace(spec, runtime=Runtime(num_workers=2), tags={}))        # how it computes: not compared
    for other in (replace(spec, data=replace(data, fix_labels=False)), replace(spec, weights_sha256='0' * 64),
                  replace(spec, data=replace(data, fingerprint='f' * 64)), spec.with_recipe(replace(spec.recipe, lr=1))):
        assert not spec.same_run(other)


def test_old_config_reads_as_a_spec():
    cfg = dict(recipe=dict(name='x', description='d', precision='bf16', extras=[['folds', 3], ['soft', True]]), data='/d',
               data_fingerprint='abc', skip_bad=True, relabel=dict(file='/r.csv', sha256='123'),
               options=dict(num_workers=0, out='/runs', speed=dict(cache=False)))
    spec = RunSpec.from_config(cfg)
    assert spec.recipe.folds == 3 and spec.recipe.soft_age and spec.out == '/runs'
    assert spec.runtime == Runtime(precision='bf16', cache=False, num_workers=0)
    assert spec.data == DataSpec('/d', True, False, '/r.csv', '123', 'abc')


@pytest.fixture(scope='module')
def study_data(tiny_demo, tmp_path_factory):
    "A copy of the tiny demo data whose files a test may change, and a runs folder with one study run in it."
    root = tmp_path_factory.mktemp('reuse')
    data, out = root / 'demo', root / 'runs'
    shutil.copytree(tiny_demo, data)
    run_study(['baseline_mobilenetv2'], data, out, TINY, quick=True, log=lambda *_: None)
    return data, out


def _status(dest) -> str: return pd.read_csv(dest / 'study.csv')['status'].iloc[0]


def test_study_reuses_only_runs_of_the_same_preparation_and_weights(study_data, tmp_path):
    data, out = study_data
    quiet = dict(quick=True, log=lambda *_: None)
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, **quiet)) == 'reused'
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, fix_labels=True, **quiet)) == 'trained'
    relabel = tmp_path / 'relabel.csv'
    relabel.write_text('task,person,label\ngender,000000,\n')       # a reviewed file that changes nothing
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, relabel=relabel, **quiet)) == 'trained'
    import timm
    weights = tmp_path / 'mnv2.pth'
    torch.save(timm.create_model('mobilenetv2_100', num_classes=18).state_dict(), weights)
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, weights=weights, **quiet)) == 'trained'
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, weights=weights, **quiet)) == 'reused'
    # how the run computes is not what it learns: another worker count reuses
    assert _status(run_study(['baseline_mobilenetv2'], data, out, TINY, runtime=Runtime(num_workers=0), **quiet)) == 'reused'


def test_study_trains_anew_when_the_data_changed(study_data):
    data, out = study_data
    photo = next((data / 'train' / 'images').glob('*/mask1.*'))
    with Image.open(photo) as im: Image.fromarray(255 - np.asarray(im.convert('RGB'))).save(photo)   # same path, new content
    dest = run_study(['baseline_mobilenetv2'], data, out, TINY, quick=True, log=lambda *_: None)
    assert _status(dest) == 'trained'
    d = pd.read_csv(dest / 'study.csv')['run_dir'].iloc[0]
    spec = RunSpec.from_config(RunDir(d).read_config())
    assert find_run(out, spec) is not None and len(list((out / 'baseline_mobilenetv2').iterdir())) >= 2


@pytest.mark.skipif(not _bf16_cpu_ok(), reason='bf16 autocast unsupported on this CPU build')
def test_a_run_predicts_at_its_own_precision_everywhere(tiny_demo, tmp_path):
    "`--precision bf16`: training, validation and the submission record bf16; predict and evaluate default to it."
    run = run_recipe(resolve('baseline_mobilenetv2', quick=True, **TINY), tiny_demo, tmp_path, num_workers=0,
                     runtime=Runtime(precision='bf16', channels_last=False))
    rd = RunDir(run)
    s = rd.read_summary()
    assert s['speed']['all']['precision'] == 'bf16' and s['eval_speed']['precision'] == 'bf16'
    src = open_data(tiny_demo)
    own = predict_paths(run, src.eval['path'])                         # the run's own runtime: bf16
    assert np.allclose(own, np.load(rd.eval_probs), atol=1e-6)
    fp32 = predict_paths(run, src.eval['path'], runtime=Runtime(precision='fp32', channels_last=False))
    assert not np.allclose(own, fp32, atol=1e-6)                     # so the comparison above can tell them apart
    vf = pd.read_csv(rd.valid_preds)
    assert np.allclose(predict_paths(run, vf['path']), np.load(rd.valid_probs), atol=1e-6)   # validation: bf16 too
    assert evaluate(run, tiny_demo, out=tmp_path / 'ev')['precision'] == 'bf16'
    res = CliRunner().invoke(app, ['evaluate', str(run), '--data', str(tiny_demo), '--out', str(tmp_path / 'ev32'),
                                   '--precision', 'fp32'])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / 'ev32' / 'scores.json').read_text())['precision'] == 'fp32'
    sub = tmp_path / 'sub.csv'
    res = CliRunner().invoke(app, ['predict', str(run), '--data', str(tiny_demo), '--out', str(sub), '--precision', 'fp32'])
    assert res.exit_code == 0, res.output
    assert (pd.read_csv(sub)['ans'].to_numpy() == fp32.argmax(1)).all()


def test_study_tables_name_data_portably(tmp_path, monkeypatch):
    "A study table names data beside the working folder relatively, and a practice set by the command that built it."
    from fastmask.io import write_json
    from fastmask.tools.study import data_origin, portable
    work, shared = tmp_path / 'main', tmp_path / 'shared' / 'data' / 'x.csv'
    work.mkdir()
    monkeypatch.chdir(work)
    assert portable(shared) == '../shared/data/x.csv' and portable('demo') == 'demo'
    assert portable(work / 'practice') == 'practice' and portable('/elsewhere/p') == '/elsewhere/p'
    write_json(work / 'practice' / 'proxy.json', dict(source=str(tmp_path / 'shared' / 'faces'), format='utkface',
                                                      persons=50, eval_persons=10, seed=3, ages=[18, 119]))
    assert data_origin(work / 'practice') == ('fastmask data proxy --faces ../shared/faces --format utkface --out practice '
                                              '--persons 50 --eval-persons 10 --seed 3')   # built before framings: 'source'
    write_json(work / 'face' / 'proxy.json', dict(source=str(tmp_path / 'shared' / 'faces'), format='utkface', persons=50,
                                                  eval_persons=10, seed=3, ages=[18, 119], framing='face'))
    assert data_origin(work / 'face').endswith('--seed 3 --framing face')
    assert data_origin(work) is None


def test_study_scores_members_on_other_data_sets(study_data, tmp_path):
    "`--eval`: every member is also scored on other labelled data (train on one set of faces, score on others)."
    data, out = study_data
    src = open_data(data)
    other = tmp_path / 'other.csv'
    pd.DataFrame({'path': src.train['path'].head(24), 'gender': src.train['gender'].head(24)}).to_csv(other, index=False)
    res = CliRunner().invoke(app, ['study', 'baseline_mobilenetv2', '--data', str(data), '--out', str(out), '--quick',
                                   '--epochs', '1', '--size', '32', '--eval', str(other), '--eval', str(data)])
    assert res.exit_code == 0, res.output
    dest = out / 'study' / f'baseline_mobilenetv2@{data.name}@on-other+{data.name}'   # members @ data @on- eval sets
    row = pd.read_csv(dest / 'study.csv').iloc[0]
    run = row['run_dir']
    ev = json.loads((RunDir(run).evaluation('other') / 'scores.json').read_text())
    assert row['other:f1_gender'] == pytest.approx(ev['f1_gender']) and np.isnan(row['other:f1_mask'])   # no mask labels
    assert row[f'{data.name}:f1'] == pytest.approx(row['eval_f1'], abs=1e-4)          # the layout's eval truth, again
    md = (dest / 'study.md').read_text()
    from fastmask.tools.studytable import portable
    assert '| other gender |' in md and f'--eval {portable(other)}' in md
