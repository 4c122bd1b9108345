"""The CLI end to end: demo data -> quick baseline -> run folder -> predict -> score; and one-line errors."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app

runner = CliRunner()


def fastmask(*args, cwd=None):
    "Run the installed CLI as a user would, in a subprocess."
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, '-m', 'fastmask', *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=1200)


def test_recipes_lists_baseline_and_filters():
    res = runner.invoke(app, ['recipes'])
    assert res.exit_code == 0 and 'baseline_mobilenetv2' in res.output
    res = runner.invoke(app, ['recipes', 'baseline_*'])
    assert all(line.startswith('baseline_') for line in res.output.strip().splitlines())
    assert runner.invoke(app, ['recipes', 'zzz*']).exit_code != 0


@pytest.mark.parametrize('args,msg', [
    (['recipe', 'no_such_recipe', '--data', 'demo'], "unknown recipe 'no_such_recipe'"),
    (['recipe', 'baseline_mobilenetv2', '--data', '/nonexistent/folder'], 'does not exist'),
    (['recipe', 'baseline_mobilenetv2', '--arch', 'not_a_model'], "unknown architecture 'not_a_model'"),
    (['score', '/nonexistent/sub.csv', '/nonexistent/truth.csv'], 'file not found'),
    (['recipe', 'baseline_mobilenetv2', '--bs', '32', '--set', 'bs=64'], '--set bs=64 contradicts --bs 32'),
])
def test_user_errors_are_one_line(args, msg):
    res = fastmask(*args)
    assert res.returncode != 0
    assert msg in res.stderr
    assert 'Traceback' not in res.stderr
    assert len([l for l in res.stderr.splitlines() if l.startswith('error:')]) == 1


def test_bad_option_value_exits_nonzero():
    res = runner.invoke(app, ['recipe', 'baseline_mobilenetv2', '--epochs', '0'])
    assert res.exit_code != 0


@pytest.fixture(scope='module')
def demo300(tmp_path_factory):
    from fastmask.sources.demo import make_demo
    return make_demo(tmp_path_factory.mktemp('demo300') / 'demo', persons=300, eval_persons=30, seed=0)


def test_quick_baseline_end_to_end(demo300, tmp_path):
    res = fastmask('recipe', 'baseline_mobilenetv2', '--quick', '--data', demo300, cwd=tmp_path)  # default --out runs
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir, = (tmp_path / 'runs' / 'baseline_mobilenetv2').iterdir()
    for f in ['config.json', 'metrics_all.csv', 'model_all.pth', 'valid_preds.csv', 'valid_probs.npy',
              'summary.json', 'submission.csv']:
        assert (run_dir / f).is_file(), f
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert summary['status'] == 'finished'
    assert {'valid_f1', 'valid_f1_mask', 'valid_f1_gender', 'valid_f1_age'} <= set(summary)
    assert summary['valid_f1_mask'] >= 0.8, summary  # the model learned: chance is ~0.33
    cfg = json.loads((run_dir / 'config.json').read_text())
    assert cfg['recipe']['name'] == 'baseline_mobilenetv2' and cfg['recipe']['size'] == 64 and cfg['versions']['torch']
    metrics = pd.read_csv(run_dir / 'metrics_all.csv')
    assert len(metrics) >= 1 and 'f1_score' in metrics.columns

    sub = pd.read_csv(run_dir / 'submission.csv')
    info = pd.read_csv(demo300 / 'eval' / 'info.csv')
    assert sub['ImageID'].tolist() == info['ImageID'].tolist() and sub['ans'].between(0, 17).all()

    out = tmp_path / 'again.csv'
    res = fastmask('predict', run_dir, '--data', demo300, '--out', out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert pd.read_csv(out)['ans'].tolist() == sub['ans'].tolist()  # predict reproduces the run's submission

    res = fastmask('score', out, demo300 / 'eval' / 'truth.csv')
    assert res.returncode == 0
    scores = dict(line.split() for line in res.stdout.strip().splitlines())
    assert set(scores) == {'f1', 'f1_mask', 'f1_incorrect', 'f1_gender', 'f1_age'}
    assert float(scores['f1_mask']) >= 0.7 and abs(float(scores['f1']) - summary['eval_f1']) < 1e-3
