"""Decision calibration: per-class logit offsets fitted to macro F1 on the validation people, baked into the head.

A model trained on one set of faces often shifts its class boundaries on another (an age model that calls most
people in their thirties "under 30"); a recipe's `calibrate` fields move a task's decision thresholds to where
macro F1 on the validation people is highest. Adding `b` to the logits multiplies the probabilities by `exp(b)`
(renormalised), so the offsets go into the classifier's bias and every consumer of the model file (prediction,
the app, ONNX) sees the calibrated decisions without knowing about them.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ['GRID', 'fast_macro_f1', 'fit_offsets', 'apply_offsets', 'shift_logits']

#: the offsets tried for each class (log-probability units)
GRID = np.round(np.linspace(-3.0, 3.0, 61), 2)


def fast_macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    "scikit-learn's macro F1 (over the labels present in `y` or `pred`) from one confusion matrix."
    cm = np.bincount(y * n + pred, minlength=n * n).reshape(n, n)
    tp = np.diag(cm).astype(float)
    support = cm.sum(0) + cm.sum(1)           # predicted + true per class: 2tp + fp + fn
    present = support > 0
    return float((2 * tp[present] / support[present]).mean()) if present.any() else 0.0


def apply_offsets(probs: np.ndarray, offsets) -> np.ndarray:
    "Probabilities multiplied by `exp(offsets)` and renormalised: softmax(logits + offsets)."
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None)) + np.asarray(offsets, np.float64)
    p = np.exp(logp - logp.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.asarray(probs).dtype)


def fit_offsets(probs: np.ndarray, y, passes: int = 3, grid: np.ndarray = GRID) -> np.ndarray:
    """Per-class logit offsets maximising macro F1 of `argmax(log probs + offsets)` against `y`.

    Coordinate ascent over `grid` from zero; a class's offset only moves for a strictly higher F1 (ties keep the
    smaller change), so offsets stay at zero where the decisions are already the best ones. Centred to mean 0."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None))
    y, n = np.asarray(y, int), logp.shape[1]
    b = np.zeros(n)
    best = fast_macro_f1(y, logp.argmax(1), n)
    for _ in range(passes):
        moved = False
        for k in range(n):
            for v in sorted(grid, key=lambda g: abs(g - b[k])):   # nearest first: ties keep the smaller change
                trial = b.copy()
                trial[k] = v
                f = fast_macro_f1(y, (logp + trial).argmax(1), n)
                if f > best + 1e-12: best, b, moved = f, trial, True
        if not moved: break
    return b - b.mean()


def shift_logits(model: torch.nn.Module, offsets) -> torch.nn.Module:
    "Add `offsets` to the bias of the model's classifier (its last linear layer with that many outputs)."
    offsets = torch.as_tensor(np.asarray(offsets), dtype=torch.float32)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == len(offsets)]
    if not last or last[-1].bias is None: raise ValueError(f'the model has no classifier with a bias of {len(offsets)} outputs')
    with torch.no_grad(): last[-1].bias.add_(offsets.to(last[-1].bias))
    return model
