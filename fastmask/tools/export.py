"""Export a run folder to ONNX: its task heads combined into one 18-class probability output, checked against PyTorch.

`export_onnx(run_dir)` writes `run_dir/model.onnx` (input: a normalised image batch `(n, 3, size, size)`, output:
18-class probabilities) and `model.onnx.json` (size, crop, and the largest difference from PyTorch measured with
onnxruntime on the validation images). Split runs are combined by the outer product of the mask, gender and age
probabilities; k-fold runs by the mean of their folds. `onnx_predict_paths` predicts image files with onnxruntime.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from fastmask.data.block import infer_dl
from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.inference.predict import load_task_model, run_models
from fastmask.io import atomic_path, read_json, write_json
from fastmask.labels import N_CLASSES
from fastmask.rundir import RunDir

__all__ = ['ExportError', 'RunModule', 'load_run_module', 'export_onnx', 'onnx_session', 'onnx_predict_paths',
           'torch_predict_paths', 'onnx_file', 'ATOL']

ATOL = 1e-4


class ExportError(FastmaskError, RuntimeError):
    "A run folder that cannot be exported, or an export whose predictions differ from PyTorch's."


class RunModule(nn.Module):
    "A run's task models as one module: normalised images -> 18-class probabilities (mean over k-fold members)."
    def __init__(self, members: list[dict[str, nn.Module]]):
        super().__init__()
        for m in members:
            if 'all' not in m and not all(t in m for t in ('mask', 'gender', 'age')):
                raise ExportError(f"a run needs an 'all' model or mask, gender and age models (has {', '.join(m)})")
        self.members = nn.ModuleList(nn.ModuleDict(m) for m in members)

    @staticmethod
    def _probs(m: nn.ModuleDict, x):
        if 'all' in m: return m['all'](x).float().softmax(-1)
        pm, pg, pa = (m[t](x).float().softmax(-1) for t in ('mask', 'gender', 'age'))
        return (pm[:, :, None, None] * pg[:, None, :, None] * pa[:, None, None, :]).flatten(1)   # dynamic batch

    def forward(self, x):
        return torch.stack([self._probs(m, x) for m in self.members]).mean(0)


def _member_dirs(run_dir: Path) -> list[Path]:
    rd = RunDir(run_dir)
    if rd.models(): return [run_dir]
    folds = [f.path for f in rd.folds()]
    if not folds: raise ExportError(f'{run_dir}: no model files and no fold folders (not a finished run folder?)')
    return folds


def load_run_module(run_dir) -> tuple[RunModule, dict]:
    "The run's models combined into one `RunModule` (eval mode, CPU) and the input size and crop they expect."
    run_dir = Path(run_dir)
    if not run_dir.is_dir(): raise ExportError(f'{run_dir}: run folder does not exist')
    members, metas = [], []
    for d in _member_dirs(run_dir):
        loaded = {t: load_task_model(p) for t, p in run_models(d).items()}
        members.append({t: m for t, (m, _) in loaded.items()})
        metas += [meta for _, meta in loaded.values()]
    shapes = {(m['size'], round(float(m['crop']), 6), repr(m.get('stats'))) for m in metas}
    if len(shapes) != 1: raise ExportError(f'{run_dir}: models expect different input sizes/crops/normalisations {sorted(shapes)}')
    size, crop = metas[0]['size'], metas[0]['crop']
    stats = metas[0].get('stats')   # the normalisation the models were trained with (None: the report's, older runs)
    return RunModule(members).eval(), dict(size=int(size), crop=float(crop), members=len(members),
                                           stats=[list(s) for s in stats] if stats else None,
                                           tasks=sorted({t for m in members for t in m}))


def onnx_file(run_dir) -> Path:
    "Where a run folder's ONNX model lives."
    return RunDir(run_dir).onnx


def onnx_session(path):
    "An onnxruntime CPU session (one-line error when onnxruntime is missing)."
    try: import onnxruntime as ort
    except ImportError: raise MissingExtraError('onnxruntime', 'onnx', 'ONNX inference') from None
    if not Path(path).is_file(): raise ExportError(f"{path}: no ONNX model (run 'fastmask export RUN_DIR' first)")
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])


def _batches(paths, size, crop, bs, num_workers, stats=None):
    for (xb,) in infer_dl(list(map(str, paths)), size, crop, bs=bs, num_workers=num_workers, device=torch.device('cpu'),
                          stats=stats):
        yield torch.as_tensor(xb).float()


def onnx_predict_paths(path, paths, bs: int = 64, num_workers: int | None = None, tta: bool = False) -> np.ndarray:
    """18-class probabilities of image files from an exported ONNX model.

    `tta` averages the 18-class probabilities of each image and its mirror image (for task-split runs,
    `predict_paths(tta=True)` averages each head before combining them: the two differ slightly)."""
    path = Path(path)
    sess, meta = onnx_session(path), read_json(path.with_name(path.name + '.json'))
    name = sess.get_inputs()[0].name
    out = []
    for xb in _batches(paths, meta['size'], meta['crop'], bs, num_workers, meta.get('stats')):
        p = sess.run(None, {name: xb.numpy()})[0]
        if tta: p = (p + sess.run(None, {name: xb.flip(-1).numpy()})[0]) / 2
        out.append(p)
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


@torch.no_grad()
def torch_predict_paths(module: RunModule, meta: dict, paths, bs: int = 64, num_workers: int | None = None) -> np.ndarray:
    "18-class probabilities of image files from the PyTorch `RunModule` (the reference for the ONNX check)."
    return np.concatenate([module(xb).numpy() for xb in _batches(paths, meta['size'], meta['crop'], bs, num_workers, meta.get('stats'))])


def _check_paths(run_dir: Path, n: int) -> list[str]:
    "Validation images of the run (first `n`), the images the export is checked on."
    for d in [RunDir(run_dir), *RunDir(run_dir).folds()]:
        if d.valid_preds.is_file(): return pd.read_csv(d.valid_preds)['path'].astype(str).tolist()[:n]
    raise ExportError(f'{run_dir}: no validation predictions to check the export on')


def export_onnx(run_dir, out=None, opset: int = 17, check: int = 256, atol: float = ATOL,
                num_workers: int | None = None) -> Path:
    "Write the run's 18-class ONNX model; check it against PyTorch on up to `check` validation images."
    try: import onnx  # noqa: F401
    except ImportError: raise MissingExtraError('onnx', 'onnx', 'ONNX export') from None
    run_dir = Path(run_dir)
    module, meta = load_run_module(run_dir)
    out = Path(out) if out else onnx_file(run_dir)
    x = torch.zeros(2, 3, meta['size'], meta['size'])
    with atomic_path(out, '.onnx') as tmp, warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (x,), str(tmp), dynamo=False, input_names=['image'], output_names=['probs'],
                          dynamic_axes={'image': {0: 'batch'}, 'probs': {0: 'batch'}}, opset_version=opset)
    write_json(out.with_name(out.name + '.json'), dict(meta, opset=opset, run_dir=str(run_dir)))
    if check:
        paths = _check_paths(run_dir, check)
        diff = float(np.abs(onnx_predict_paths(out, paths, num_workers=num_workers)
                            - torch_predict_paths(module, meta, paths, num_workers=num_workers)).max())
        write_json(out.with_name(out.name + '.json'), dict(meta, opset=opset, run_dir=str(run_dir),
                                                           checked_images=len(paths), max_abs_diff=diff))
        if not diff <= atol:
            raise ExportError(f'{out}: ONNX predictions differ from PyTorch by {diff:.2e} (> {atol:.0e}) on '
                              f'{len(paths)} validation images')
    return out
