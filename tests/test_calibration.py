"""Decision calibration: offsets fitted to macro F1 on validation people, baked into the classifier's bias."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from fastmask.inference.calibration import apply_offsets, fast_macro_f1, fit_offsets, shift_logits


@pytest.mark.parametrize('seed', range(4))
def test_fast_macro_f1_is_sklearns(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3 if seed else 2, 200)   # seed 0: a class never predicted
    assert fast_macro_f1(y, p, 3) == pytest.approx(f1_score(y, p, average='macro'))


def _shifted(n=900, seed=0, shift=(1.5, 0.0, -1.5)):
    "Well-separated logits whose decisions a constant offset has pushed towards class 0 (a domain's prior shift)."
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(0, 1, (n, 3)) + 2.5 * np.eye(3)[y] + np.asarray(shift)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), y


def test_offsets_undo_a_shift_and_carry_over_to_new_people():
    p, y = _shifted(seed=0)
    b = fit_offsets(p, y)
    before, after = fast_macro_f1(y, p.argmax(1), 3), fast_macro_f1(y, apply_offsets(p, b).argmax(1), 3)
    assert after > before + 0.05 and b[0] < b[2] and abs(b.sum()) < 1e-9
    q, z = _shifted(seed=1)                                         # other people, same shift: the offsets still help
    assert fast_macro_f1(z, apply_offsets(q, b).argmax(1), 3) > fast_macro_f1(z, q.argmax(1), 3) + 0.05


def test_offsets_stay_zero_where_decisions_are_already_best():
    p, y = _shifted(shift=(0, 0, 0))
    p = 0.9 * np.eye(3)[y] + 0.05                                    # every decision right already
    assert np.array_equal(fit_offsets(p, y), np.zeros(3))


def test_shift_logits_is_apply_offsets_on_the_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.randn(20, 5)
    before = model(x).softmax(-1).detach().numpy()
    shift_logits(model, [0.7, -0.2, -0.5])
    after = model(x).softmax(-1).detach().numpy()
    assert np.allclose(after, apply_offsets(before, [0.7, -0.2, -0.5]), atol=1e-5)
    with pytest.raises(ValueError, match='4 outputs'): shift_logits(model, [0, 0, 0, 0])


def test_calibrated_task_model_file_records_offsets_and_predicts_with_them(tiny_demo, tmp_path):
    "The offsets are fitted on the validation people's raw predictions and baked into the saved model's decisions."
    from fastmask.inference.predict import load_task_model, model_probs
    from fastmask.recipes import resolve
    from fastmask.rundir import RunDir
    from fastmask.runners.train import build_learner, fit_task
    from fastmask.runtime import Runtime
    rt = Runtime(num_workers=0)
    r = resolve('cpu_split_lite0', quick=True, size=32, bs=16, epochs=1, tasks=('gender',), calibrate=('gender',),
                pretrained=False, head_init='')   # an untrained body: decisions a shift improves
    learn = fit_task(build_learner(r, tiny_demo, 'gender', runtime=rt), tmp_path)
    model, meta = load_task_model(RunDir(tmp_path).model('gender'))
    offsets = np.asarray(meta['calibration'])
    assert offsets.shape == (2,) and np.abs(offsets).max() > 0             # the 1-epoch tiny model's decisions moved
    paths = learn.dls.valid.items['path']
    calibrated = model_probs(model, meta, paths, runtime=rt)
    shift_logits(model, -offsets)
    raw = model_probs(model, meta, paths, runtime=rt)
    y = learn.dls.valid.items['gender'].to_numpy().astype(int)
    assert np.allclose(fit_offsets(raw, y), offsets, atol=1e-6)            # fitted on the validation people
    assert np.allclose(calibrated, apply_offsets(raw, offsets), atol=1e-4)  # and in the file's own predictions
    assert fast_macro_f1(y, calibrated.argmax(1), 2) > fast_macro_f1(y, raw.argmax(1), 2)


def test_calibrate_must_name_a_task_of_the_recipe(tiny_demo, tmp_path):
    "Refused when the recipe is made (the command line's --set, a --tasks that drops the task), before a run folder."
    from fastmask.errors import RecipeError
    from fastmask.recipes import resolve
    with pytest.raises(RecipeError, match="calibrate names colour"): resolve('cpu_split_lite0', calibrate=('colour',))
    with pytest.raises(RecipeError, match=r"calibrate names age, not a task of recipe cpu_split_lite0 \(gender\)"):
        resolve('cpu_split_lite0', calibrate=('age',), tasks=('gender',))
    assert resolve('cpu_split_lite0', calibrate=('age',)).calibrate == ('age',)
    from test_cli_errors import _invoke
    line = _invoke('recipe', 'cpu_split_lite0', '--data', tiny_demo, '--out', tmp_path, '--set', 'calibrate=colour')
    assert 'calibrate names colour' in line and not list(tmp_path.iterdir())


def test_a_calibrated_run_scores_validation_with_one_pass(tiny_demo, tmp_path, monkeypatch):
    "The run's validation probabilities are calibration's pass with the offsets applied: what the saved model predicts."
    from fastai.learner import Learner
    from fastmask.inference.predict import load_task_model, model_probs
    from fastmask.rundir import RunDir
    from fastmask.runners.run import run_recipe
    from fastmask.recipes import resolve
    from fastmask.runtime import Runtime
    calls = []
    get_preds = Learner.get_preds
    monkeypatch.setattr(Learner, 'get_preds', lambda self, *a, **k: calls.append(1) or get_preds(self, *a, **k))
    r = resolve('cpu_split_lite0', quick=True, size=32, bs=16, epochs=1, tasks=('gender',), calibrate=('gender',),
                pretrained=False, head_init='')
    rt = Runtime(num_workers=0)
    rd = RunDir(run_recipe(r, tiny_demo, tmp_path, runtime=rt))
    assert len(calls) == 1                                                  # calibration's pass, used for the scores
    valid = np.load(rd.task_probs('gender'))
    model, meta = load_task_model(rd.model('gender'))
    paths = pd.read_csv(rd.valid_preds)['path']
    assert np.allclose(valid, model_probs(model, meta, paths, runtime=rt), atol=1e-4)


def _ceiling_module():
    "benchmarks/decision_ceiling.py, imported from its file (benchmarks are scripts, not a package)."
    import importlib.util
    from pathlib import Path
    file = Path(__file__).resolve().parents[1] / 'benchmarks' / 'decision_ceiling.py'
    spec = importlib.util.spec_from_file_location('decision_ceiling', file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_decision_ceiling_recovers_a_shift_and_not_a_coin(tmp_path, capsys):
    mod = _ceiling_module()
    p, y = _shifted(n=1200, seed=3)
    r = mod.ceiling(y, p)
    assert r['as_predicted'] < r['half_fitted'] - 0.1 and r['ceiling'] >= r['half_fitted'] - 0.02  # thresholds fix a shift
    coin = np.random.default_rng(0).dirichlet(np.ones(3), 1200)                                     # no signal at all
    assert mod.ceiling(y, coin)['half_fitted'] < 0.45                        # halves: no gain from fitting to noise
    df = pd.DataFrame({'true_age': y, **{f'prob_age_{k}': p[:, k] for k in range(3)}})
    df.to_csv(tmp_path / 'predictions.csv', index=False)
    assert mod.main([str(tmp_path / 'predictions.csv'), '--tasks', 'gender,age']) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if 'predictions.csv' in ln]
    assert len(rows) == 1 and '| age | 1200 |' in rows[0]                   # gender: not in the file, left out
