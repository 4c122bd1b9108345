"""`fastmask evaluate`: per-task scores of a run on labelled CSVs and on a layout's eval truth; bad inputs."""
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import FastmaskError
from fastmask.tools.evaluate import EvaluateError, evaluate, per_task, run_parts
from fastmask.io import read_json, save_torch, write_json
from fastmask.labels import AGES, GENDERS, MASKS, age_group, decode, encode
from fastmask.sources.open import open_data
from fastmask.inference.predict import combine_tasks, predict_paths
from fastmask.inference.scoring import macro_f1
from fastmask.recipes import resolve
from fastmask.runners.run import run_recipe

TINY = dict(quick=True, size=32, epochs=1)
FAIRFACE = ((3, '0-2'), (10, '3-9'), (20, '10-19'), (30, '20-29'), (40, '30-39'), (50, '40-49'), (60, '50-59'),
            (70, '60-69'), (999, '70+'))


@pytest.fixture(scope='module')
def run(tiny_demo, tmp_path_factory):
    "One finished 18-class run on the tiny demo, shared by every test here."
    out = tmp_path_factory.mktemp('eval-runs')
    return run_recipe(resolve('baseline_mobilenetv2', **TINY), tiny_demo, out, num_workers=0, overrides=TINY)


@pytest.fixture(scope='module')
def layout_eval(run, tiny_demo):
    return evaluate(run, tiny_demo)


@pytest.fixture(scope='module')
def mask_run(tmp_path_factory):
    "A run folder with only an (untrained) mask model."
    from fastmask.models.backbones import create_model
    d = tmp_path_factory.mktemp('mask-run')
    m = create_model('mobilenetv2_100', 3, pretrained=False)
    save_torch(d / 'model_mask.pth', dict(arch='mobilenetv2_100', task='mask', n_out=3, size=32, crop=350 / 384,
                                          age_cut=60, state_dict=m.state_dict()))
    return d


def write_labels(path, df):
    "A labels CSV whose image paths are relative to it."
    df = df.assign(path=[os.path.relpath(p, path.parent) for p in df['path']])
    df.to_csv(path, index=False)
    return path


def eval_rows(data) -> pd.DataFrame:
    "The eval images with truth of a layout: path, mask, gender, age group."
    src = open_data(data)
    m, g, a = decode(src.truth['ans'].to_numpy())
    return pd.DataFrame({'path': [str(data / 'eval' / 'images' / i) for i in src.truth['ImageID']], 'm': m, 'g': g, 'a': a})


def fairface(years) -> str:
    return next(b for hi, b in FAIRFACE if years < hi)


def marginal_preds(run, paths) -> dict:
    "Per-task argmax of the marginals of predict_paths' 18-class probabilities (an independent computation)."
    p = predict_paths(run, paths).reshape(-1, 3, 2, 3)
    return dict(all=p.reshape(len(p), 18).argmax(1), mask=p.sum((2, 3)).argmax(1), gender=p.sum((1, 3)).argmax(1),
                age=p.sum((1, 2)).argmax(1))


def test_layout_with_eval_truth(run, tiny_demo, layout_eval):
    res, summary = layout_eval, read_json(run / 'summary.json')
    out = run / 'eval_demo'
    assert res['out'] == str(out) and res['tasks'] == ['all', 'mask', 'gender', 'age']
    assert res['f1'] == summary['eval_f1'] and res['n_images'] == 28
    df = pd.read_csv(out / 'predictions.csv')
    truth = open_data(tiny_demo).truth
    assert df['ImageID'].tolist() == truth['ImageID'].tolist() and (df['true_all'] == truth['ans']).all()
    assert (df['true_age'] == decode(truth['ans'].to_numpy())[2]).all()
    exp = marginal_preds(run, df['path'])
    for t in ('all', 'mask', 'gender', 'age'):
        assert (df[f'pred_{t}'] == exp[t]).all()
        assert res['scores'][t]['macro_f1'] == round(macro_f1(df[f'true_{t}'], exp[t]), 4)
    np.testing.assert_allclose(df[[f'prob_mask_{i}' for i in range(3)]].sum(1), 1, atol=1e-4)
    assert set(res['scores']['all']['class_f1']) == {f'{m}/{g}/{a}' for m in MASKS for g in GENDERS for a in AGES}
    assert sum(res['scores']['mask']['support'].values()) == 28
    assert read_json(out / 'scores.json')['f1_age'] == res['f1_age']
    for f in ('confusion_all', 'confusion_mask', 'confusion_gender', 'confusion_age', 'class_f1'):
        with Image.open(out / f'{f}.png') as im: assert im.size[0] > 100


def test_csv_with_all_three_tasks_scores_like_the_layout(run, tiny_demo, layout_eval, tmp_path):
    rows = eval_rows(tiny_demo)
    csv = write_labels(tmp_path / 'eval_labels.csv', pd.DataFrame({
        'path': rows['path'], 'mask': [MASKS[i] for i in rows['m']], 'gender': [GENDERS[i][0] for i in rows['g']],
        'age': [AGES[i] for i in rows['a']]}))
    res = evaluate(run, csv, out=tmp_path / 'ev')
    assert res['tasks'] == ['all', 'mask', 'gender', 'age']
    for k in ('f1', 'f1_mask', 'f1_gender', 'f1_age'): assert res[k] == layout_eval[k]
    df = pd.read_csv(tmp_path / 'ev' / 'predictions.csv')
    assert (df['true_all'] == encode(rows['m'], rows['g'], rows['a'])).all()


def test_csv_gender_and_age_bins_only(run, tiny_demo, tmp_path):
    "FairFace-style bins ('70+', '50-59', ...) give the true age groups; no mask or 18-class score without mask labels."
    train = open_data(tiny_demo).train.iloc[::3].reset_index(drop=True)
    bins = [fairface(a) for a in train['age']]
    bins[0] = '70+'
    expected = age_group(train['age'].to_numpy())
    expected[0] = 2
    csv = write_labels(tmp_path / 'faces.csv', pd.DataFrame({'path': train['path'], 'gender': train['gender'], 'age': bins}))
    res = evaluate(run, csv, out=tmp_path / 'ev')
    assert res['tasks'] == ['gender', 'age'] and 'f1' not in res and 'f1_mask' not in res
    df = pd.read_csv(tmp_path / 'ev' / 'predictions.csv')
    assert (df['true_age'] == expected).all() and (df['true_gender'] == train['gender']).all()
    assert not any(c.startswith(('pred_mask', 'prob_all')) for c in df.columns)
    exp = marginal_preds(run, df['path'])
    assert (df['pred_age'] == exp['age']).all()
    assert res['f1_gender'] == round(macro_f1(df['true_gender'], df['pred_gender']), 4)
    files = {p.name for p in (tmp_path / 'ev').iterdir()}
    assert {'confusion_gender.png', 'confusion_age.png', 'class_f1.png'} <= files and 'confusion_mask.png' not in files


def test_csv_mask_only(run, mask_run, tiny_demo, tmp_path):
    train = open_data(tiny_demo).train.iloc[::5].reset_index(drop=True)
    names = {0: 'with_mask', 1: 'incorrect_mask', 2: 'normal'}
    csv = write_labels(tmp_path / 'masks.csv', pd.DataFrame({'path': train['path'], 'mask': train['mask'].map(names)}))
    res = evaluate(run, csv)
    assert res['tasks'] == ['mask'] and res['out'] == str(run / 'eval_masks')
    df = pd.read_csv(run / 'eval_masks' / 'predictions.csv')
    assert (df['true_mask'] == train['mask']).all() and (df['pred_mask'] == marginal_preds(run, df['path'])['mask']).all()
    from fastmask.inference.predict import task_probs
    res2 = evaluate(mask_run, csv, out=tmp_path / 'm')  # a task model is used as it is
    df2 = pd.read_csv(tmp_path / 'm' / 'predictions.csv')
    assert res2['tasks'] == ['mask']
    assert (df2['pred_mask'] == task_probs(mask_run, df2['path'])['mask'].argmax(1)).all()


def test_kfold_and_ensemble_folders_average_their_parts(run, mask_run, tiny_demo, layout_eval, tmp_path):
    "A k-fold folder (folds: the run, a mask-only run) inside an ensemble: tasks every part has, probabilities averaged."
    from fastmask.inference.predict import task_probs
    kf, ens = tmp_path / 'kfold', tmp_path / 'ens'
    shutil.copytree(run, kf / 'fold0')
    shutil.copytree(mask_run, kf / 'fold1')
    write_json(ens / 'members.json', dict(a=str(run), b=str(kf)))
    assert run_parts(ens) == [run, kf] and run_parts(kf) == [kf / 'fold0', kf / 'fold1'] and run_parts(run) == []
    res = evaluate(ens, tiny_demo)
    assert res['tasks'] == ['mask']
    got = pd.read_csv(ens / 'eval_demo' / 'predictions.csv')
    p_run = pd.read_csv(run / 'eval_demo' / 'predictions.csv').filter(like='prob_mask').to_numpy()
    p_mask = task_probs(mask_run, got['path'])['mask']
    expected = (p_run + (p_run + p_mask) / 2) / 2
    np.testing.assert_allclose(got.filter(like='prob_mask').to_numpy(), expected, atol=1e-5)
    assert (got['pred_mask'] == expected.argmax(1)).all()


def test_per_task_marginals_and_products():
    rng = np.random.default_rng(0)
    p18 = rng.dirichlet(np.ones(18), size=50)
    t = per_task({'all': p18})
    assert np.allclose(t['mask'][:, 1], p18[:, 6:12].sum(1)) and np.allclose(t['gender'][:, 1], p18.reshape(50, 3, 6)[:, :, 3:].sum((1, 2)))
    assert np.allclose(t['age'][:, 2], p18[:, 2::3].sum(1))
    pm, pg, pa = (rng.dirichlet(np.ones(k), size=50) for k in (3, 2, 3))
    assert np.allclose(per_task(dict(mask=pm, gender=pg, age=pa))['all'], combine_tasks(pm, pg, pa))
    assert set(per_task(dict(mask=pm))) == {'mask'}


def test_cli_writes_and_prints(run, tiny_demo, tmp_path):
    res = CliRunner().invoke(app, ['evaluate', str(run), '--data', str(tiny_demo), '--out', str(tmp_path / 'o'),
                                   '--workers', '0', '--tta'])
    assert res.exit_code == 0, res.output
    assert f"wrote {tmp_path / 'o'}" in res.output and 'f1_gender' in res.output
    assert read_json(tmp_path / 'o' / 'scores.json')['tta'] is True


def _bad(kind, run, mask_run, tiny_demo, tmp_path):
    "(run folder, data, expected words) of one kind of bad input."
    imgs = open_data(tiny_demo).train['path']
    if kind == 'not_run': return tmp_path, tiny_demo, 'not a run folder'
    if kind == 'no_run': return tmp_path / 'nope', tiny_demo, 'does not exist'
    if kind == 'no_labels':
        return run, write_labels(tmp_path / 'x.csv', pd.DataFrame({'path': imgs[:3], 'race': 'a'})), 'no label column'
    if kind == 'no_common':
        csv = write_labels(tmp_path / 'ga.csv', pd.DataFrame({'path': imgs[:3], 'gender': 'm', 'age': 40}))
        return mask_run, csv, 'no task in common'
    if kind == 'missing_image':
        return run, write_labels(tmp_path / 'm.csv', pd.DataFrame({'path': [str(tmp_path / 'gone.jpg')], 'mask': 'wear'})), 'gone.jpg'
    data = tmp_path / 'copy'
    shutil.copytree(tiny_demo, data)
    if kind == 'no_truth':
        (data / 'eval' / 'truth.csv').unlink()
        return run, data, 'truth.csv: not found'
    with open(data / 'eval' / 'truth.csv', 'a') as f: f.write('ghost.jpg,3\n')
    return run, data, 'ghost.jpg'


@pytest.mark.parametrize('kind', ['not_run', 'no_run', 'no_labels', 'no_common', 'missing_image', 'no_truth', 'ghost'])
def test_bad_inputs_one_line(kind, run, mask_run, tiny_demo, tmp_path):
    run_dir, data, words = _bad(kind, run, mask_run, tiny_demo, tmp_path)
    out = tmp_path / 'out'
    res = CliRunner().invoke(app, ['evaluate', str(run_dir), '--data', str(data), '--out', str(out), '--workers', '0'])
    assert res.exit_code == 1 and 'Traceback' not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and words in lines[0], res.output
    assert not out.exists()  # nothing half-written
    with pytest.raises(FastmaskError, match=words.replace('.', r'\.')):
        evaluate(run_dir, data, out)


def test_api_error_type(mask_run, tiny_demo, tmp_path):
    imgs = open_data(tiny_demo).train['path'][:2]
    csv = write_labels(tmp_path / 'g_only.csv', pd.DataFrame({'path': imgs, 'gender': 'f'}))
    with pytest.raises(EvaluateError, match='no task in common'): evaluate(mask_run, csv)
