"""A run folder's models loaded once, answering image files with the numbers `fastmask predict` gives.

`Predictor(run_dir).probs(paths)` is `tools.evaluate.run_probs` (the per-task probabilities of any run kind: task
models, an 18-class model, k-fold folds and ensemble members soft-voted, probes) with the model files read once
instead of on every call: each leaf run folder's task models are loaded (`inference.predict.load_task_model`) and
prepared for its runtime when the app starts, and every call goes through `inference.predict.model_probs`, the same
loader, preprocessing and heads as `fastmask predict`. Each leaf predicts at its own recorded runtime, with two
changes that do not change a number: no decoded-image cache (one photo at a time; the cache is pixel-identical, so
nothing is written under `$FASTMASK_CACHE` per photo), no loader workers and no `torch.compile`. A kind with its own prediction hook
(`predict`) is asked through `task_probs` on every call. `tests/test_app.py` checks the numbers against
`predict_paths` and `run_probs`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastai.torch_core import default_device

from fastmask.inference.predict import load_task_model, model_probs, run_kind, run_models, run_runtime, soft_vote, task_probs
from fastmask.labels import TASKS
from fastmask.models.fold import folded_inference_model
from fastmask.runners.registry import get_hook
from fastmask.runtime import Runtime
from fastmask.tools.evaluate import per_task, run_parts, run_tasks

__all__ = ['Predictor', 'Leaf']


@dataclass
class Leaf:
    "One run folder with models (or a kind that predicts itself), or a composite of parts whose answers are averaged."
    path: Path
    models: dict = field(default_factory=dict)     # task -> (model, metadata)
    runtime: Runtime | None = None
    parts: list = field(default_factory=list)
    hooked: bool = False                           # the kind has a `predict` hook: asked through task_probs


def _load(run_dir: Path) -> Leaf:
    if parts := run_parts(run_dir): return Leaf(run_dir, parts=[_load(Path(p)) for p in parts])
    if get_hook(run_kind(run_dir), 'predict') is not None:
        return Leaf(run_dir, runtime=run_runtime(run_dir, cache=False, num_workers=0), hooked=True)
    rt, dev = run_runtime(run_dir, cache=False, compile=False, num_workers=0), default_device()
    models = {}
    for task, path in run_models(run_dir).items():
        model, meta = load_task_model(path)
        models[task] = (folded_inference_model(model, rt, dev), meta)
    return Leaf(run_dir, models=models, runtime=rt)


class Predictor:
    "Per-task probabilities of a finished run folder of any kind on image files; models loaded once."
    def __init__(self, run_dir):
        self.run_dir = Path(run_dir)
        self.tasks = run_tasks(self.run_dir)      # one-line EvaluateError for a folder without models
        self.root = _load(self.run_dir)

    @property
    def n_models(self) -> int:
        "How many task models were loaded."
        def count(leaf): return len(leaf.models) + sum(count(p) for p in leaf.parts)
        return count(self.root)

    @property
    def meta(self) -> dict:
        "The metadata of the first loaded model (input size, crop, architecture)."
        def first(leaf):
            if leaf.models: return next(iter(leaf.models.values()))[1]
            for p in leaf.parts:
                if (m := first(p)) is not None: return m
            return None
        return first(self.root) or {}

    def probs(self, paths, preprocessed: bool = False, tta: bool = False) -> dict[str, np.ndarray]:
        """Per-task probabilities (`run_probs`' tasks: 'all', 'mask', 'gender', 'age' as the run allows) of image files;
        `preprocessed`: the files are already what the models take (the run's own face crops), so no leaf runs its
        `preprocess` hook again."""
        return self._probs(self.root, [str(p) for p in paths], preprocessed, tta)

    def _probs(self, leaf: Leaf, paths: list[str], preprocessed: bool, tta: bool) -> dict[str, np.ndarray]:
        if leaf.parts:
            each = [self._probs(p, paths, preprocessed, tta) for p in leaf.parts]
            return {t: soft_vote([e[t] for e in each]) for t in TASKS if all(t in e for e in each)}
        if leaf.hooked: return per_task(task_probs(leaf.path, paths, runtime=leaf.runtime, tta=tta))
        kind = run_kind(leaf.path)
        pre = None if preprocessed else get_hook(kind, 'preprocess')
        seen = pre(leaf.path, paths) if pre is not None else paths
        probs = {t: model_probs(m, meta, seen, bs=64, runtime=leaf.runtime, tta=tta) for t, (m, meta) in leaf.models.items()}
        if (heads := get_hook(kind, 'heads')) is not None: probs.update(heads(leaf.path, paths, probs))
        return per_task(probs)
