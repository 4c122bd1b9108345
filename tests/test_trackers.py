"""`--track`: TensorBoard, MLflow and W&B (offline) runs written for real and read back; clear one-line messages
for trackers not installed."""
import json
import struct
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fastmask.cli import app
from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.recipes.registry import resolve
from fastmask.callbacks.trackers import check_tracker, flatten, tracker_callbacks, tracking
from fastmask.runners.run import run_recipe
from optional import need


def _events(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(path), size_guidance={'images': 0, 'scalars': 0})
    ea.Reload()
    return ea


def test_tensorboard_run_logs_config_metrics_and_plots(tiny_demo, tmp_path):
    need('tensorboard')
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


@pytest.mark.parametrize('name', ['wandb', 'mlflow', 'tensorboard'])
def test_missing_tracker_is_one_line_before_any_run_folder(name, tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed (CI installs every tracker)
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
    need('mlflow')
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
    summary = json.loads((run_dir / 'summary.json').read_text())
    assert run.data.metrics['valid_f1'] == pytest.approx(summary['valid_f1'])
    assert run.data.metrics['n_valid'] == summary['n_valid']


def test_runs_nested_in_a_tracked_run_are_untracked(tmp_path):
    need('tensorboard')
    with tracking('tensorboard', tmp_path) as t:
        assert type(tracker_callbacks('mask')[0]).__name__ == 'TensorBoardCallback'
        with tracking(None, tmp_path / 'member'): assert tracker_callbacks('mask') == []
        assert len(tracker_callbacks('age')) == 1
    assert tracker_callbacks('mask') == [] and list((tmp_path / 'tensorboard' / 'run').glob('events.out.tfevents.*'))


def _wandb_records(run_dir, wait: float = 60.0):
    """The records of the W&B offline run in `run_dir/wandb` (its `.wandb` file: W&B's LevelDB-style log of
    protobuf `Record`s in 32 KiB blocks after a 7-byte header), read without the network or a W&B account.
    `run.finish()` can return before W&B's service has flushed the file: wait up to `wait` s for its exit record."""
    t0 = time.time()
    while True:
        recs = _read_wandb_file(Path(run_dir))
        if any(r.WhichOneof('record_type') == 'exit' for r in recs) or time.time() - t0 > wait: return recs
        time.sleep(0.2)


def _read_wandb_file(run_dir: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb
    (f,) = run_dir.joinpath('wandb').glob('offline-run-*/run-*.wandb')
    data, pos, part, out = f.read_bytes(), 7, b'', []
    assert data[:4] == b':W&B'
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7: pos += left; continue                   # a block's tail too short for a header is padding
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if n == 0 and kind == 0: pos += left; continue       # zero padding to the block's end
        part, pos = part + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):                                   # a full record, or the last piece of one
            r = pb.Record()
            r.ParseFromString(part)
            out.append(r)
            part = b''
    return out


def _items(items) -> dict:
    return {i.key or '/'.join(i.nested_key): json.loads(i.value_json) for i in items}


def test_wandb_offline_run_logs_config_metrics_per_task_and_summary(tiny_demo, tmp_path, monkeypatch):
    "A split run: each task's per-epoch values under its own names, read back from the offline run file."
    need('wandb')
    for k, sub in (('WANDB_CONFIG_DIR', 'config'), ('WANDB_CACHE_DIR', 'cache'), ('WANDB_DATA_DIR', 'data')):
        monkeypatch.setenv(k, str(tmp_path / 'wandb-home' / sub))
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    r = resolve('split_mobilenetv2', quick=True, size=32, epochs=2, bs=16, tasks=('mask', 'gender'))
    run_dir = run_recipe(r, tiny_demo, tmp_path / 'runs', num_workers=0, track='wandb')
    recs = _wandb_records(run_dir)
    kinds = [x.WhichOneof('record_type') for x in recs]
    (run,) = [x.run for x in recs if x.WhichOneof('record_type') == 'run']
    config = _items(run.config.update)
    assert config['recipe.arch'] == 'mobilenetv2_100' and config['recipe.tasks'] == str(['mask', 'gender'])  # config.json's list
    history = [_items(x.history.item) for x in recs if x.WhichOneof('record_type') == 'history']
    import pandas as pd
    for task in ('mask', 'gender'):
        logged = pd.read_csv(run_dir / f'metrics_{task}.csv')
        rows = [h for h in history if f'{task}/valid_loss' in h]
        assert [h[f'{task}/epoch'] for h in rows] == [0, 1]   # one point per epoch, stepped by the task's epoch
        for col in ('train_loss', 'valid_loss', 'f1_score'):
            assert [round(h[f'{task}/{col}'], 4) for h in rows] == logged[col].round(4).tolist()
    assert not any('all/valid_loss' in h or 'valid_loss' in h for h in history)  # no task logged under another's name
    summary = {}
    for x in recs:
        if x.WhichOneof('record_type') == 'summary': summary.update(_items(x.summary.update))
    s = json.loads((run_dir / 'summary.json').read_text())
    assert summary['valid_f1_mask'] == pytest.approx(s['valid_f1_mask'])
    assert summary['valid_f1_gender'] == pytest.approx(s['valid_f1_gender']) and summary['n_valid'] == s['n_valid']
    plots = {k.split('/')[1] for h in history for k in h if k.startswith('plots/')}
    assert {'confusion_mask', 'confusion_gender', 'curves_mask'} <= plots
    assert list(Path(run_dir, 'wandb').glob('offline-run-*/files/media/images/plots/confusion_mask_*.png'))
    (exit_rec,) = [x.exit for x in recs if x.WhichOneof('record_type') == 'exit']
    assert exit_rec.exit_code == 0 and kinds.index('exit') > kinds.index('summary')
    assert tracker_callbacks('mask') == []  # nothing stays active after the run
