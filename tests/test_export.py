"""ONNX export: task heads combined into 18 classes, predictions equal PyTorch's; predict --onnx and --tta."""
import numpy as np
import pandas as pd
import pytest
from optional import need

need('onnx', reason="ONNX export needs the 'onnx' extra")
need('onnxruntime', reason="ONNX inference needs the 'onnx' extra")

from typer.testing import CliRunner  # noqa: E402

from fastmask.cli import app  # noqa: E402
from fastmask.tools.export import (ATOL, ExportError, export_onnx, load_run_module, onnx_file,  # noqa: E402
                             onnx_predict_paths, torch_predict_paths)
from fastmask.inference.predict import predict_paths as _predict  # noqa: E402
from fastmask.runtime import Runtime  # noqa: E402


def predict_paths(*a, **kw):
    "PyTorch predictions in fp32, what the exported ONNX model computes (bf16 autocast would differ by ~1e-2)."
    return _predict(*a, runtime=Runtime(precision='fp32', channels_last=False), **kw)


@pytest.fixture(scope='module')
def split_run(tiny_demo, tmp_path_factory):
    "A finished task-split run (mask, gender, age models) of one tiny epoch."
    from fastmask.recipes.registry import resolve
    from fastmask.runners.run import run_recipe
    r = resolve('baseline_mobilenetv2', quick=True, size=32, epochs=1, bs=16, tasks=('mask', 'gender', 'age'))
    return run_recipe(r, tiny_demo, tmp_path_factory.mktemp('exp'), num_workers=0)


def test_run_module_combines_heads_like_predict(split_run, tiny_demo):
    from fastmask.sources.open import open_data
    module, meta = load_run_module(split_run)
    assert meta['tasks'] == ['age', 'gender', 'mask'] and meta['size'] == 32
    paths = open_data(tiny_demo).eval['path'][:10]
    p = torch_predict_paths(module, meta, paths, num_workers=0)
    assert p.shape == (10, 18) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(p, predict_paths(split_run, paths), atol=1e-5)


def test_export_matches_pytorch_and_cli_predicts(split_run, tiny_demo, tmp_path):
    res = CliRunner().invoke(app, ['export', str(split_run), '--workers', '0'])
    assert res.exit_code == 0, res.output
    path = onnx_file(split_run)
    assert path.is_file() and 'max |onnx - torch|' in res.output
    vf = pd.read_csv(split_run / 'valid_preds.csv')
    ref = predict_paths(split_run, vf['path'])
    got = onnx_predict_paths(path, vf['path'], num_workers=0)
    assert got.shape == ref.shape and np.abs(got - ref).max() < ATOL     # the validation images, within 1e-4
    sub = tmp_path / 'sub.csv'
    res = CliRunner().invoke(app, ['predict', str(split_run), '--data', str(tiny_demo), '--onnx', '--tta', '--precision', 'fp32',
                                   '--out', str(sub), '--workers', '0'])
    assert res.exit_code == 0, res.output
    from fastmask.sources.open import open_data
    eval_paths = open_data(tiny_demo).eval['path']
    tta = onnx_predict_paths(onnx_file(split_run), eval_paths, num_workers=0, tta=True)
    assert (pd.read_csv(sub)['ans'].to_numpy() == tta.argmax(1)).all()


def test_tta_averages_flipped_predictions(split_run, tiny_demo):
    "predict --tta averages each head over the image and its mirror image; ONNX TTA averages the 18-class output."
    import torch
    from fastmask.tools.export import _batches
    from fastmask.sources.open import open_data
    from fastmask.inference.predict import combine_tasks
    module, meta = load_run_module(split_run)
    paths = open_data(tiny_demo).eval['path'][:8]
    heads = module.members[0]
    with torch.no_grad():
        xb = torch.cat(list(_batches(paths, meta['size'], meta['crop'], 64, 0)))
        avg = {t: ((heads[t](xb).softmax(-1) + heads[t](xb.flip(-1)).softmax(-1)) / 2).numpy() for t in heads}
        combined = ((module(xb) + module(xb.flip(-1))) / 2).numpy()
    tta = predict_paths(split_run, paths, tta=True)
    assert np.allclose(tta, combine_tasks(avg['mask'], avg['gender'], avg['age']), atol=1e-5)
    assert not np.allclose(tta, predict_paths(split_run, paths), atol=1e-6)
    assert np.abs(onnx_predict_paths(onnx_file(split_run), paths, num_workers=0, tta=True) - combined).max() < ATOL


def test_export_errors_are_one_line(tmp_path, tiny_demo):
    with pytest.raises(ExportError): export_onnx(tmp_path / 'missing')
    res = CliRunner().invoke(app, ['export', str(tmp_path)])
    assert res.exit_code == 1 and 'no model files' in res.output
    res = CliRunner().invoke(app, ['predict', str(tmp_path), '--onnx', '--data', str(tiny_demo)])
    assert res.exit_code == 1 and 'fastmask export' in res.output
