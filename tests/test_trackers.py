"""`--track`: TensorBoard event files written for real; clear one-line messages for trackers not installed."""
import importlib.util

import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.recipes.registry import resolve
from fastmask.callbacks.trackers import check_tracker, flatten, tracker_callbacks, tracking
from fastmask.runners.run import run_recipe


def _events(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(path), size_guidance={'images': 0, 'scalars': 0})
    ea.Reload()
    return ea


def test_tensorboard_run_logs_config_metrics_and_plots(tiny_demo, tmp_path):
    pytest.importorskip('tensorboard', reason='the tensorboard extra is not installed')
    r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=2, bs=16)
    run_dir = run_recipe(r, tiny_demo, tmp_path / 'runs', num_workers=0, track='tensorboard')
    fit = _events(run_dir / 'tensorboard' / 'all')
    assert {'train_loss', 'valid_loss', 'f1_score', 'accuracy'} <= set(fit.Tags()['scalars'])
    assert len(fit.Scalars('valid_loss')) == 2  # one point per epoch
    import pandas as pd
    logged = pd.read_csv(run_dir / 'metrics_all.csv')['valid_loss'].to_numpy()
    assert [round(e.value, 4) for e in fit.Scalars('valid_loss')] == [round(float(v), 4) for v in logged]
    end = _events(run_dir / 'tensorboard' / 'run')
    assert 'config/text_summary' in end.Tags()['tensors']
    assert {'plots/confusion', 'plots/top_losses', 'plots/curves_all'} <= set(end.Tags()['images'])
    import json
    assert end.Scalars('summary/valid_f1')[0].value == pytest.approx(json.loads((run_dir / 'summary.json').read_text())['valid_f1'])
    assert tracker_callbacks('all') == []  # nothing stays active after the run


@pytest.mark.parametrize('name', ['wandb', 'mlflow'])
def test_missing_tracker_is_one_line_before_any_run_folder(name, tiny_demo, tmp_path):
    if importlib.util.find_spec(name) is not None: pytest.skip(f'{name} is installed here')
    with pytest.raises(MissingExtraError, match=rf"pip install 'fastmask\[{name}\]'"): check_tracker(name)
    res = CliRunner().invoke(app, ['recipe', 'baseline_mobilenetv2', '--data', str(tiny_demo), '--quick',
                                   '--out', str(tmp_path / 'runs'), '--track', name])
    assert res.exit_code == 1 and f"--track {name} needs the optional package '{name}'" in res.output
    assert 'Traceback' not in res.output and not (tmp_path / 'runs').exists()


def test_unknown_tracker_and_untracked_context(tmp_path):
    with pytest.raises(FastmaskError, match="unknown tracker 'neptune'"): check_tracker('neptune')
    with tracking(None, tmp_path) as t: assert t is None and tracker_callbacks('mask') == []


def test_flatten():
    assert flatten(dict(recipe=dict(arch='b3', loss=dict(name='ce')), seed=1)) == {'recipe.arch': 'b3',
                                                                                 'recipe.loss.name': 'ce', 'seed': 1}


def test_mlflow_run_in_local_file_store(tiny_demo, tmp_path, monkeypatch):
    pytest.importorskip('mlflow', reason='the mlflow extra is not installed')
    from mlflow.tracking import MlflowClient
    monkeypatch.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')
    r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=2, bs=16)
    run_dir = run_recipe(r, tiny_demo, tmp_path / 'runs', num_workers=0, track='mlflow')
    client = MlflowClient(tracking_uri=(run_dir / 'mlruns').resolve().as_uri())
    run, = client.search_runs([client.get_experiment_by_name('baseline_mobilenetv2').experiment_id])
    assert run.info.status == 'FINISHED' and run.data.params['recipe.arch'] == 'mobilenetv2_100'
    import pandas as pd
    logged = pd.read_csv(run_dir / 'metrics_all.csv')['valid_loss'].round(4).tolist()
    assert [round(m.value, 4) for m in client.get_metric_history(run.info.run_id, 'all/valid_loss')] == logged
    assert 'plots/confusion.png' in [a.path for a in client.list_artifacts(run.info.run_id, 'plots')]


def test_runs_nested_in_a_tracked_run_are_untracked(tmp_path):
    pytest.importorskip('tensorboard', reason='the tensorboard extra is not installed')
    with tracking('tensorboard', tmp_path) as t:
        assert type(tracker_callbacks('mask')[0]).__name__ == 'TensorBoardCallback'
        with tracking(None, tmp_path / 'member'): assert tracker_callbacks('mask') == []
        assert len(tracker_callbacks('age')) == 1
    assert tracker_callbacks('mask') == [] and list((tmp_path / 'tensorboard' / 'run').glob('events.out.tfevents.*'))
