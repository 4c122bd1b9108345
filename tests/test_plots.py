"""`fastmask report`: PNGs written from a run folder's metrics, predictions and probabilities."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import FastmaskError
from fastmask.sources.open import open_data
from fastmask.plots import report, task_truth_preds, top_losses


@pytest.fixture
def run_dir(tiny_demo, tmp_path):
    "A fake finished 18-class run on the tiny demo: metrics log, validation predictions and probabilities."
    d = tmp_path / 'runs' / 'baseline' / '20260101-000000'
    d.mkdir(parents=True)
    pd.DataFrame(dict(epoch=[0, 1, 2], train_loss=[2.5, 1.8, 1.2], valid_loss=[2.4, 2.0, 1.9], f1_score=[.1, .3, .4],
                      accuracy=[.2, .4, .5], time='00:01')).to_csv(d / 'metrics_all.csv', index=False)
    v = open_data(tiny_demo).train.head(30).reset_index(drop=True)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(18, .3), len(v)).astype(np.float32)
    vp = v[['path', 'person', 'mask', 'gender', 'age', 'label']].assign(pred=probs.argmax(1))
    vp.to_csv(d / 'valid_preds.csv', index=False)
    np.save(d / 'valid_probs.npy', probs)
    return d


def test_report_writes_every_png(run_dir):
    paths = report(run_dir, k=4)
    names = {p.name for p in paths}
    assert names == {'curves_all.png', 'confusion.png', 'confusion_mask.png', 'confusion_gender.png',
                     'confusion_age.png', 'class_f1.png', 'top_losses.png'}
    for p in paths:
        with Image.open(p) as im:
            assert im.format == 'PNG' and min(im.size) > 200
            assert np.asarray(im.convert('L')).std() > 5  # something was drawn
    assert not list(run_dir.glob('.*.tmp*'))  # atomic writes leave no temporaries


def test_top_losses_are_confident_and_wrong(run_dir):
    vp, probs = pd.read_csv(run_dir / 'valid_preds.csv'), np.load(run_dir / 'valid_probs.npy')
    rows = top_losses(vp, probs, k=5)
    assert len(rows) == 5 and (rows['pred'] != rows['label']).all()
    conf = rows['confidence'].to_numpy()
    assert (np.diff(conf) <= 0).all()
    wrong = probs.argmax(1) != vp['label'].to_numpy()
    assert conf[0] == pytest.approx(probs[wrong].max(1).max())
    with pytest.raises(FastmaskError, match='rows'): top_losses(vp.head(3), probs)


def test_task_truth_from_split_run_without_18_class_pred():
    vp = pd.DataFrame(dict(mask=[0, 1, 2], gender=[0, 1, 1], age=[25, 45, 60], pred_age=[0, 2, 2], pred_mask=[0, 0, 2]))
    t, p = task_truth_preds(vp, 'age')
    assert list(t) == [0, 1, 2] and list(p) == [0, 2, 2]
    assert task_truth_preds(vp, 'gender') is None and task_truth_preds(vp, 'all') is None
    full = pd.DataFrame(dict(label=[0, 17, 9], pred=[1, 17, 3]))
    t, p = task_truth_preds(full, 'gender')
    assert list(t) == [0, 1, 1] and list(p) == [0, 1, 1]  # ids 0, 17, 9 / 1, 17, 3


def test_report_on_run_without_metrics_or_probs(run_dir):
    for f in ('metrics_all.csv', 'valid_probs.npy'): (run_dir / f).unlink()
    names = {p.name for p in report(run_dir)}
    assert 'curves_all.png' not in names and 'top_losses.png' not in names and 'confusion.png' in names
    (run_dir / 'valid_preds.csv').unlink()
    with pytest.raises(FastmaskError, match='nothing|no metric logs'): report(run_dir)


def test_report_command(run_dir, tmp_path):
    res = CliRunner().invoke(app, ['report', str(run_dir), '--k', '3'])
    assert res.exit_code == 0, res.output
    assert res.output.count('wrote ') == 7 and (run_dir / 'top_losses.png').is_file()
    res = CliRunner().invoke(app, ['report', str(tmp_path / 'nope')])
    assert res.exit_code == 1 and 'does not exist' in res.output
