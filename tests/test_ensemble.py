"""Soft-voting ensembles: the average, row alignment, the CLI, and reuse of finished member runs."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.runners.ensemble import EnsembleError, ensemble_runs
from fastmask.runners.run import find_run
from fastmask.io import read_json
from fastmask.inference.predict import predict_paths
from fastmask.recipes.registry import resolve
from fastmask.runners.run import run_recipe

TINY = dict(quick=True, size=32, epochs=1)


@pytest.fixture(scope='module')
def members(tiny_demo, tmp_path_factory):
    "Two finished 18-class runs on the tiny demo that differ only in their seed."
    out = tmp_path_factory.mktemp('ens-runs')
    return [run_recipe(resolve('baseline_mobilenetv2', seed=s, **TINY), tiny_demo, out, num_workers=0,
                       overrides=dict(TINY, seed=s)) for s in (1, 2)]


def test_average_is_mean_of_members(members, tiny_demo):
    vp, ep = ensemble_runs(members, tiny_demo)
    a, b = (np.load(d / 'valid_probs.npy') for d in members)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(vp, (a + b) / 2, rtol=1e-6)
    from fastmask.sources.open import open_data
    paths = open_data(tiny_demo).eval['path']
    pa, pb = (predict_paths(d, paths) for d in members)
    np.testing.assert_allclose(ep, (pa + pb) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ep.sum(1), 1, atol=1e-4)


def test_mismatched_rows_one_line_error(members, tiny_demo, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(members[1], bad)
    df = pd.read_csv(bad / 'valid_preds.csv')
    df.loc[[0, 1], 'path'] = df.loc[[1, 0], 'path'].to_numpy()
    df.to_csv(bad / 'valid_preds.csv', index=False)
    with pytest.raises(EnsembleError, match='validation rows differ'):
        ensemble_runs([members[0], bad])
    res = CliRunner().invoke(app, ['ensemble', str(members[0]), str(bad), '--data', str(tiny_demo), '--workers', '0'])
    assert res.exit_code == 1
    assert 'Traceback' not in res.output and len(res.output.strip().splitlines()) == 1
    assert 'validation rows differ' in res.output


def test_unfinished_member_is_refused(members, tmp_path):
    half = tmp_path / 'half'
    shutil.copytree(members[0], half)
    (half / 'summary.json').unlink()
    with pytest.raises(EnsembleError, match='not a finished run'):
        ensemble_runs([members[0], half])


def test_cli_prints_member_and_ensemble_f1(members, tiny_demo, tmp_path):
    sub = tmp_path / 'sub.csv'
    res = CliRunner().invoke(app, ['ensemble', *map(str, members), '--data', str(tiny_demo), '--out', str(sub),
                                   '--workers', '0'])
    assert res.exit_code == 0, res.output
    assert all(str(d) in res.output for d in members) and 'valid_f1 ' in res.output
    s = pd.read_csv(sub)
    assert len(s) == 28 and s['ans'].between(0, 17).all()


def test_ensemble_final_reuses_members(tiny_demo, tmp_path):
    "ensemble_final in quick mode (cheap arch, one 18-class model per member) trains its members once, then reuses them."
    ov = dict(TINY, arch='mobilenetv2_100', tasks=('all',))
    out = tmp_path / 'runs'
    r = resolve('ensemble_final', **ov)
    first = run_recipe(r, tiny_demo, out, num_workers=0, overrides=ov, log=lambda *_: None)
    s1 = read_json(first / 'summary.json')
    assert s1['status'] == 'finished' and s1['reused'] == []
    assert set(s1['member_f1']) == {'swa_effnet_b3', 'swa_densenet121', 'swa_resnext50'}
    n_runs = {m: len(list((out / m).iterdir())) for m in s1['member_f1']}
    assert n_runs == {m: 1 for m in s1['member_f1']}
    second = run_recipe(r, tiny_demo, out, num_workers=0, overrides=ov, log=lambda *_: None)
    s2 = read_json(second / 'summary.json')
    assert {m: len(list((out / m).iterdir())) for m in s1['member_f1']} == n_runs
    assert sorted(s2['reused']) == sorted(s1['member_f1']) and s2['member_runs'] == s1['member_runs']
    vp = np.mean([np.load(f'{d}/valid_probs.npy') for d in s1['member_runs'].values()], 0)
    np.testing.assert_allclose(np.load(second / 'valid_probs.npy'), vp, rtol=1e-5)
    from fastmask.sources.open import open_data
    from runcheck import check_submission, check_valid_f1
    src = open_data(tiny_demo)
    check_valid_f1(second, src)     # the summary's F1 is the vote's: pred = argmax of the members' mean (above)
    check_submission(second, src)
    # a changed setting is a different member recipe: not reused (the member's own specification is)
    from fastmask.runspec import RunSpec
    spec = RunSpec.from_config(read_json(Path(s1['member_runs']['swa_effnet_b3']) / 'config.json'))
    assert find_run(out, spec) == Path(s1['member_runs']['swa_effnet_b3'])
    assert find_run(out, spec.with_recipe(resolve('swa_effnet_b3', **dict(ov, seed=7)))) is None
