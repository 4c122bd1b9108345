"""K-fold by person: fold assignment, out-of-fold predictions and soft-voted fold models."""
import numpy as np
import pandas as pd
import pytest

from fastmask.errors import FastmaskError, LayoutError
from fastmask.runners.kfold import as_kfold, fold_dirs, person_folds
from fastmask.recipes.registry import resolve


def _people(n=240, seed=0):
    "A frame of `n` people x 7 photos with random gender and ages (about 7% aged 60)."
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, n)
    age = np.where(rng.random(n) < .07, 60, rng.integers(18, 60, n))
    return pd.DataFrame({'person': np.repeat([f'p{i:03d}' for i in range(n)], 7), 'gender': np.repeat(gender, 7),
                         'age': np.repeat(age, 7), 'mask': np.tile([0, 0, 0, 0, 0, 1, 2], n)})


def test_folds_partition_people_and_stratify():
    df = _people()
    folds = person_folds(df, k=5, seed=3)
    assert len(folds) == 5
    valid_people = [set(df['person'].iloc[va]) for _, va in folds]
    for i, (tr, va) in enumerate(folds):
        assert not set(df['person'].iloc[tr]) & valid_people[i]          # people never split
        assert len(tr) + len(va) == len(df)
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(df)))                          # every photo validated exactly once
    for i in range(5):
        for j in range(i + 1, 5): assert not valid_people[i] & valid_people[j]
    strat = df['gender'] * 3 + np.where(df['age'] < 30, 0, np.where(df['age'] < 60, 1, 2))
    overall = strat.value_counts(normalize=True)
    for _, va in folds:
        share = strat.iloc[va].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert (share - overall).abs().max() < 0.05


def test_folds_depend_on_seed_and_refuse_too_few_people():
    df = _people(40)
    a, b = person_folds(df, 4, seed=1), person_folds(df, 4, seed=2)
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    with pytest.raises(LayoutError): person_folds(df.iloc[:14], 3)       # two people, three folds
    with pytest.raises(FastmaskError): person_folds(df, 1)


def test_as_kfold_wraps_train_recipes_only():
    r = as_kfold(resolve('baseline_mobilenetv2'), 3)
    assert r.kind == 'kfold' and r.folds == 3 and r.fold_kind == 'train'
    assert as_kfold(r, 4).folds == 4
    with pytest.raises(FastmaskError): as_kfold(resolve('sweep_age_cut'), 3)
    with pytest.raises(FastmaskError): as_kfold(r, 1)


def test_kfold_run_writes_oof_and_votes_folds(tiny_demo, tmp_path):
    from fastmask.io import read_json
    from fastmask.sources.open import open_data
    from fastmask.inference.scoring import macro_f1
    from fastmask.inference.predict import predict_paths, soft_vote
    from typer.testing import CliRunner
    from fastmask.cli import app
    args = ['recipe', 'baseline_mobilenetv2', '--quick', '--size', '32', '--epochs', '1', '--bs', '16', '--folds', '2',
            '--data', str(tiny_demo), '--out', str(tmp_path), '--workers', '0']
    res = CliRunner().invoke(app, args + ['--fold', '1'])                    # one fold as a job of its own
    assert res.exit_code == 0, res.output
    (job,) = list(tmp_path.glob('baseline_mobilenetv2_fold1/*'))
    res = CliRunner().invoke(app, args)                                      # the k-fold run reuses it
    assert res.exit_code == 0, res.output
    assert 'oof_f1' in res.output
    (run,) = list(tmp_path.glob('baseline_mobilenetv2/*'))
    assert (run / 'fold1' / 'model_all.pth').read_bytes() == (job / 'model_all.pth').read_bytes()
    assert read_json(run / 'fold1' / 'summary.json')['n_valid'] == read_json(job / 'summary.json')['n_valid']
    src = open_data(tiny_demo)
    s = read_json(run / 'summary.json')
    folds = fold_dirs(run)
    assert [d.name for d in folds] == ['fold0', 'fold1']
    for d in folds: assert (d / 'summary.json').exists() and (d / 'config.json').exists()
    oof = np.load(run / 'oof_probs.npy')
    assert oof.shape == (len(src.train), 18) and np.allclose(oof.sum(1), 1, atol=1e-4)
    preds = pd.read_csv(run / 'oof_preds.csv')
    assert sorted(preds['path']) == sorted(src.train['path'])            # every photo predicted out of fold once
    assert s['oof_f1'] == pytest.approx(macro_f1(src.train['label'], oof.argmax(1)), abs=1e-4)
    assert len(s['fold_valid_f1']) == 2
    members = [predict_paths(d, src.eval['path']) for d in folds]
    voted = predict_paths(run, src.eval['path'])
    assert np.allclose(voted, soft_vote(members), atol=1e-5)
    assert np.allclose(np.load(run / 'eval_probs.npy'), voted, atol=1e-4)
    sub = pd.read_csv(run / 'submission.csv')
    assert (sub['ans'].to_numpy() == voted.argmax(1)).all()
