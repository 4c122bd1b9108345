"""Run records: scanning run folders into a sortable table, status of unfinished runs, the `runs` command."""
import json
import os
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import FastmaskError
from fastmask.runs import RUNNING_S, find_runs, format_overrides, run_status, runs_table


def make_run(root, recipe, stamp, f1=None, overrides=None, epochs=3, age=None):
    "A fake run folder: config.json, a metrics log, and summary.json when `f1` is given (finished)."
    d = root / recipe / stamp
    d.mkdir(parents=True)
    (d / 'config.json').write_text(json.dumps(dict(recipe=dict(name=recipe), overrides=overrides or {},
                                                   started=f'2026-01-01T00:00:{stamp[-2:]}')))
    pd.DataFrame(dict(epoch=range(epochs), train_loss=1.0, valid_loss=1.0, f1_score=.5, accuracy=.5,
                      time='00:01')).to_csv(d / 'metrics_all.csv', index=False)
    if f1 is not None:
        (d / 'summary.json').write_text(json.dumps(dict(recipe=recipe, status='finished', valid_f1=f1, valid_f1_mask=.9,
                                                        valid_f1_gender=.8, valid_f1_age=f1, wall_time_s=12.5,
                                                        epochs={'all': epochs})))
    if age is not None:
        for p in d.rglob('*'): os.utime(p, (time.time() - age, time.time() - age))
    return d


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / 'runs'
    make_run(root, 'baseline', '20260101-000001', f1=.40, overrides=dict(quick=True, epochs=3))
    make_run(root, 'baseline', '20260101-000002', f1=.60)
    make_run(root, 'swa_b3', '20260101-000003', f1=.50, epochs=5)
    make_run(root, 'swa_b3', '20260101-000004', age=2 * RUNNING_S)      # crashed long ago
    make_run(root, 'ensemble', '20260101-000005', epochs=1)              # still writing
    return root


def test_table_sorted_by_f1_with_unfinished_last(runs_root):
    df = runs_table(runs_root)
    assert list(df['f1'].iloc[:3]) == [.60, .50, .40]
    assert df['f1'].iloc[3:].isna().all()
    assert sorted(df['status'].iloc[3:]) == ['running', 'stopped']
    assert df.loc[df['f1'] == .40, 'overrides'].item() == 'epochs=3 quick'
    assert df.loc[df['f1'] == .50, 'epochs'].item() == '5'
    assert df['run'].iloc[0] == 'baseline/20260101-000002'


def test_pattern_and_sort_keys(runs_root):
    assert set(runs_table(runs_root, 'swa_*')['recipe']) == {'swa_b3'}
    assert len(runs_table(runs_root, 'baseline/*02')) == 1
    by_run = runs_table(runs_root, sort='run')
    assert list(by_run['run']) == sorted(by_run['run'])
    with pytest.raises(FastmaskError, match="cannot sort runs by 'loss'"): runs_table(runs_root, sort='loss')
    with pytest.raises(FastmaskError, match='does not exist'): find_runs(runs_root / 'nope')


def test_status_of_unfinished_runs(tmp_path):
    d = make_run(tmp_path, 'r', '20260101-000009')
    assert run_status(d) == 'running'
    assert run_status(d, now=time.time() + 2 * RUNNING_S) == 'stopped'
    (d / 'summary.json').write_text('{"status": "finished"}')
    assert run_status(d, now=time.time() + 2 * RUNNING_S) == 'finished'


def test_format_overrides():
    assert format_overrides(dict(quick=True, tasks=('mask', 'age'), lr=0.01)) == 'lr=0.01 quick tasks=mask,age'
    assert format_overrides({}) == ''


def test_runs_command_csv_and_table(runs_root):
    res = CliRunner().invoke(app, ['runs', '--root', str(runs_root), '--csv'])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith('run,recipe,overrides,epochs,f1') and len(lines) == 6
    assert lines[1].startswith('baseline/20260101-000002')
    res = CliRunner().invoke(app, ['runs', '--root', str(runs_root), 'swa_*'])
    assert res.exit_code == 0 and 'swa_b3/20260101-000003' in res.output and 'baseline/' not in res.output
    res = CliRunner().invoke(app, ['runs', '--root', str(runs_root / 'missing')])
    assert res.exit_code == 1 and 'does not exist' in res.output and 'Traceback' not in res.output
