"""No traceback reaches the user: every bad input gives one `error:` line on stderr and a non-zero exit.

The first tests run the real `python -m fastmask` as a subprocess (the bad-data corpus, a refusal, a `--skip-bad`
training run); the rest use Typer's in-process runner for speed and assert the same things (plus: no exception
other than the exit escaped the command).
"""
import os
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from test_check import make_bad_layout


def _run(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'fastmask', *map(str, args)], env=env, text=True,
                          capture_output=True, timeout=timeout)


def _one_error(err: str) -> str:
    "The single `error:` line of stderr (and no traceback)."
    assert 'Traceback' not in err, err
    lines = [l for l in err.splitlines() if l.startswith('error:')]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope='module')
def bad(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp('cli') / 'bad'
    return root, make_bad_layout(tiny_demo, root)


def test_data_check_lists_every_problem(bad):
    root, kinds = bad
    p = _run('data', 'check', root)
    assert p.returncode == 1
    line = _one_error(p.stderr)
    assert f'{len(kinds) - 1} problem(s)' in line
    for kind, path in kinds.items(): assert f'{path}: ' in p.stdout, (kind, p.stdout)
    assert len(p.stdout.splitlines()) == len(kinds)


def test_recipe_refuses_then_skips_bad(bad, tmp_path):
    root, kinds = bad
    args = ['recipe', 'baseline_mobilenetv2', '--data', root, '--size', 32, '--bs', 16, '--epochs', 1,
            '--no-pretrained', '--workers', 0, '--out', tmp_path]
    p = _run(*args)
    assert p.returncode == 1 and not list(tmp_path.iterdir())  # refused before making a run folder
    line = _one_error(p.stderr)
    assert 'more problem(s)' in line and f"fastmask data check {root}" in line and '--skip-bad' in line
    p = _run(*args, '--skip-bad', '--fix-labels')
    assert p.returncode == 0, p.stderr
    run_dir = next(tmp_path.glob('*/*'))
    sk = pd.read_csv(run_dir / 'skipped.csv')
    assert str(kinds['truncated']) in set(sk['path']) and str(kinds['empty']) in set(sk['path'])
    cfg = pd.read_json(run_dir / 'config.json', typ='series')
    assert cfg['skip_bad'] and cfg['fix_labels'] and cfg['label_fixes'][0]['person'] == '004432'
    assert cfg['skipped'] == len(sk) and len(cfg['data_fingerprint']) == 64
    q = _run('resume', run_dir)  # a finished run cannot be resumed
    assert q.returncode == 1 and 'already finished' in _one_error(q.stderr)


def _invoke(*args):
    r = CliRunner().invoke(app, list(map(str, args)))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code != 0
    return _one_error(r.stderr) + ' | ' + r.stdout  # `data check` lists the problems on stdout


def _bad_csv(tmp_path, text, name='train.csv'):
    root = tmp_path / 'layout'
    (root / 'train' / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'train' / name).write_bytes(text)
    return root


@pytest.mark.parametrize('case, expect', [
    ('missing-folder', 'data folder does not exist'),
    ('not-layout', 'not a competition layout'),
    ('csv-no-path', 'missing column(s) path'),
    ('csv-garbage', 'cannot read CSV'),
])
def test_data_check_bad_inputs(tmp_path, case, expect):
    arg = {'missing-folder': lambda: tmp_path / 'nope', 'not-layout': lambda: tmp_path,
           'csv-no-path': lambda: _bad_csv(tmp_path, b'id,gender\n1,male\n'),
           'csv-garbage': lambda: _bad_csv(tmp_path, b'"a\x00,\n\xff\xfe"unterminated')}[case]()
    assert expect in _invoke('data', 'check', arg)


def test_other_commands_bad_inputs(tiny_demo, tmp_path):
    assert "unknown recipe 'no_such_recipe'" in _invoke('recipe', 'no_such_recipe')
    assert 'data folder does not exist' in _invoke('recipe', 'baseline_mobilenetv2', '--data', tmp_path / 'nope')
    assert "unknown architecture 'nonet'" in _invoke('recipe', 'baseline_mobilenetv2', '--arch', 'nonet')
    assert 'weights file not found' in _invoke('recipe', 'baseline_mobilenetv2', '--data', tiny_demo, '--out', tmp_path,
                                               '--weights', tmp_path / 'none.pth', '--workers', 0, '--size', 32)
    assert 'not a run folder' in _invoke('resume', tmp_path)
    assert 'does not exist' in _invoke('resume', tmp_path / 'nope')
    assert 'run folder does not exist' in _invoke('predict', tmp_path / 'nope', '--data', tiny_demo)
    (tmp_path / 'sub.csv').write_text('ImageID,ans\na.jpg,3\n')
    (tmp_path / 'truth.csv').write_text('ImageID,ans\na.jpg,99\n')
    assert 'is not a class 0..17' in _invoke('score', tmp_path / 'sub.csv', tmp_path / 'truth.csv')
    assert 'file not found' in _invoke('score', tmp_path / 'sub.csv', tmp_path / 'missing.csv')
    assert 'already exists' in _invoke('data', 'demo', tiny_demo)


def test_batch_larger_than_the_training_set_is_refused(tiny_demo, tmp_path):
    "Every batch would be dropped (epochs of NaN): one line naming the data, and no run folder left behind."
    line = _invoke('recipe', 'baseline_mobilenetv2', '--data', tiny_demo, '--out', tmp_path, '--bs', 4096,
                   '--epochs', 1, '--size', 32, '--no-pretrained', '--workers', 0)
    assert str(tiny_demo) in line and 'fewer than the batch size 4096' in line, line
    assert not list(tmp_path.glob('*/*')), list(tmp_path.rglob('*'))

def test_interrupt_names_resume_command(monkeypatch, tmp_path):
    import fastmask.runners.run as run
    from fastmask.callbacks.checkpoint import RunInterrupted
    def stop(*a, **k): raise RunInterrupted(f"interrupted; continue with 'fastmask resume {tmp_path}'")
    monkeypatch.setattr(run, 'start_run', stop)
    r = CliRunner().invoke(app, ['recipe', 'baseline_mobilenetv2'])
    assert r.exit_code == 130 and f'fastmask resume {tmp_path}' in _one_error(r.stderr)


def test_odd_characters_stay_on_one_line(tmp_path):
    root = _bad_csv(tmp_path, b'path\nx\n')
    (root / 'train' / 'train.csv').write_text('path\n"bad\nname"\n')
    r = CliRunner().invoke(app, ['data', 'check', str(root)])
    assert r.exit_code == 1 and 'Traceback' not in r.stderr
    assert all(': ' in l for l in r.stdout.splitlines())
