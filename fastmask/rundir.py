"""The run folder, one contract: the names of its files, the model file format, config/summary reading and writing,
"finished", and the parts (k-fold folds, ensemble members) a composite run is made of.

No other module spells a file name of a run folder: they ask a `RunDir` (`RunDir(path).summary`,
`.model('gender')`, `.read_config()`). A run folder holds

- `config.json` — the run's specification (`fastmask.runspec.RunSpec.to_config`), written once when it starts;
- `metrics_<task>.csv` per epoch, `checkpoint_<task>.pth` while a task trains, `model_<task>.pth` when it is done;
- `valid_preds.csv`, `valid_probs.npy` (18 classes), `valid_probs_<task>.npy`, `eval_probs.npy`, `submission.csv`;
- composites: `fold<i>/` run folders with `oof_preds.csv` / `oof_probs.npy`, `members.json` naming member folders,
  `base/` (pseudo-labels), `cut<N>/` with `sweep.csv` (age-cut sweep), `curves.csv` (comparisons), `facecrop.json`;
- `eval_<data>/` — what `fastmask evaluate` wrote; `model.onnx` (+ `.json`) — what `fastmask export` wrote;
- `summary.json` — written last: a run is finished when it says so.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from fastmask.io import read_json, save_torch, write_json

__all__ = ['RunDir', 'MODEL_KEYS', 'save_model', 'load_model_file', 'unwrapped_state', 'strip_prefix']

#: the metadata a model file carries beside `state_dict` (what prediction needs to rebuild and feed the model)
MODEL_KEYS = ('arch', 'task', 'n_out', 'size', 'crop', 'age_cut', 'head', 'stats')
_PREFIXES = ('module.', '_orig_mod.')   # DistributedDataParallel / DataParallel, torch.compile


class RunDir(os.PathLike):
    "A run folder and the paths of its files."
    CONFIG, SUMMARY, MEMBERS = 'config.json', 'summary.json', 'members.json'
    VALID_PREDS, VALID_PROBS, EVAL_PROBS, SUBMISSION = 'valid_preds.csv', 'valid_probs.npy', 'eval_probs.npy', 'submission.csv'
    OOF_PREDS, OOF_PROBS, SKIPPED = 'oof_preds.csv', 'oof_probs.npy', 'skipped.csv'
    ONNX = 'model.onnx'
    CURVES, PSEUDO_LABELS, SWEEP, SWEEP_PLOT, FACECROP = 'curves.csv', 'pseudo_labels.csv', 'sweep.csv', 'sweep.png', 'facecrop.json'

    def __init__(self, path): self.path = Path(path)
    def __fspath__(self) -> str: return str(self.path)
    def __truediv__(self, name) -> Path: return self.path / name
    def __repr__(self) -> str: return f'RunDir({str(self.path)!r})'

    @property
    def config(self) -> Path: return self.path / self.CONFIG
    @property
    def summary(self) -> Path: return self.path / self.SUMMARY
    @property
    def members_file(self) -> Path: return self.path / self.MEMBERS
    @property
    def valid_preds(self) -> Path: return self.path / self.VALID_PREDS
    @property
    def valid_probs(self) -> Path: return self.path / self.VALID_PROBS
    @property
    def eval_probs(self) -> Path: return self.path / self.EVAL_PROBS
    @property
    def submission(self) -> Path: return self.path / self.SUBMISSION
    @property
    def oof_preds(self) -> Path: return self.path / self.OOF_PREDS
    @property
    def oof_probs(self) -> Path: return self.path / self.OOF_PROBS
    @property
    def skipped(self) -> Path: return self.path / self.SKIPPED
    @property
    def onnx(self) -> Path: return self.path / self.ONNX
    @property
    def curves(self) -> Path: return self.path / self.CURVES
    @property
    def pseudo_labels(self) -> Path: return self.path / self.PSEUDO_LABELS
    @property
    def sweep(self) -> Path: return self.path / self.SWEEP
    @property
    def sweep_plot(self) -> Path: return self.path / self.SWEEP_PLOT
    @property
    def facecrop(self) -> Path: return self.path / self.FACECROP

    def model(self, task: str) -> Path: return self.path / f'model_{task}.pth'
    def metrics(self, task: str) -> Path: return self.path / f'metrics_{task}.csv'
    def task_probs(self, task: str) -> Path: return self.path / f'valid_probs_{task}.npy'
    def checkpoint(self, name: str) -> Path: return self.path / f'checkpoint_{name}.pth'
    def best(self, task: str) -> Path: return self.path / f'.best_{task}.pth'
    def fold(self, i: int) -> 'RunDir': return RunDir(self.path / f'fold{i}')
    def part(self, name: str) -> 'RunDir': return RunDir(self.path / name)   # a composite's member folder: base, cut57
    def evaluation(self, data_name: str) -> Path: return self.path / f'eval_{data_name}'   # `fastmask evaluate` output

    def models(self) -> dict[str, Path]:
        "The finished task model files, by task."
        return {p.stem[len('model_'):]: p for p in sorted(self.path.glob('model_*.pth'))}

    def metrics_files(self) -> dict[str, Path]:
        "The per-epoch metric logs, by task."
        return {p.stem[len('metrics_'):]: p for p in sorted(self.path.glob('metrics_*.csv'))}

    def folds(self) -> list['RunDir']:
        "The k-fold fold folders that hold models, in fold order (empty for other runs)."
        dirs = sorted((p for p in self.path.glob('fold*') if p.is_dir() and p.name[4:].isdigit()), key=lambda p: int(p.name[4:]))
        return [RunDir(d) for d in dirs if RunDir(d).models()]

    def members(self) -> dict[str, Path]:
        "An ensemble's member run folders as recorded in `members.json`, by member name ({} without one)."
        return {k: Path(v) for k, v in read_json(self.members_file).items()} if self.members_file.is_file() else {}

    def write_members(self, members: dict) -> None: write_json(self.members_file, {k: str(v) for k, v in members.items()})

    def read_config(self) -> dict: return read_json(self.config)
    def write_config(self, config: dict) -> None: write_json(self.config, config)
    def read_summary(self) -> dict: return read_json(self.summary)
    def write_summary(self, summary: dict) -> None: write_json(self.summary, summary)

    def config_or_empty(self) -> dict:
        "config.json, or {} where there is none or it cannot be read."
        try: return self.read_config() if self.config.is_file() else {}
        except (OSError, ValueError): return {}

    @property
    def kind(self) -> str:
        "The runner kind the run folder records ('train' when it records none)."
        return self.config_or_empty().get('recipe', {}).get('kind', 'train')

    @property
    def finished(self) -> bool:
        "Whether the run folder has a summary.json with status 'finished'."
        try: return self.summary.is_file() and self.read_summary().get('status') == 'finished'
        except (OSError, ValueError): return False


def strip_prefix(state: dict) -> dict:
    "A state dict without wrapper prefixes (`module.` of DDP, `_orig_mod.` of torch.compile)."
    out = {}
    for k, v in state.items():
        for p in _PREFIXES:
            while k.startswith(p): k = k[len(p):]
        out[k] = v
    return out


def unwrapped_state(model: torch.nn.Module) -> dict:
    "The state dict of a model as it would be unwrapped (no DDP or compile prefixes)."
    return strip_prefix(model.state_dict())


def save_model(path, model: torch.nn.Module, **meta) -> Path:
    "Write a model file: `MODEL_KEYS` metadata and the unwrapped state dict (atomically)."
    missing = [k for k in MODEL_KEYS if k not in meta]
    if missing: raise ValueError(f"model file metadata lacks {', '.join(missing)}")
    return save_torch(path, dict(meta, state_dict=unwrapped_state(model)))


def load_model_file(path) -> dict:
    "A model file's metadata and state dict (older files with wrapper prefixes are read without them)."
    ck = torch.load(path, map_location='cpu', weights_only=False)
    return dict(ck, state_dict=strip_prefix(ck['state_dict']))
