"""Linear probes: pooled features of a frozen pretrained backbone, computed once and cached, and a scikit-learn
logistic regression per task folded into the model's linear head (so a probe is an ordinary task model).

A multinomial logistic regression on the pooled features is `softmax(W x + b)`, i.e. a linear layer; a binary one
is the two-class softmax of logits `(0, w x + b)`. Its regularisation is chosen per task by 3-fold cross-validated
macro F1 over `PROBE_CS`, folds by person when the rows have one (measured on Lite0 features of real faces: C = 0.05 beat 0.5 by 0.02-0.04 gender F1, and
raw features beat standardised ones). `fit_head` returns the layer's tensors; `set_head` writes them into timm's
classifier.

The fits hold BLAS (OpenBLAS) to one thread: its threads and torch's OpenMP threads, still spinning after the
feature pass, fight over the cores, and on 2 cores the gender probe of 850 faces took 7 s instead of 0.5 s.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from fastai.torch_core import default_device, get_model
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import f1_score, make_scorer
from sklearn.model_selection import StratifiedGroupKFold
from threadpoolctl import threadpool_limits

from fastmask.data.block import infer_dl
from fastmask.io import cache_root, save_npy
from fastmask.progress import progress
from fastmask.models.fold import folded_inference_model
from fastmask.runtime import Runtime, autocast_ctx, resolve_precision

__all__ = ['feature_key', 'features', 'cv_folds', 'fit_head', 'set_head', 'PROBE_CS']

#: inverse regularisation strengths the probes choose from (cross-validated macro F1)
PROBE_CS = (0.01, 0.05, 0.2, 1.0)


def feature_key(arch: str, weights: str, size: int, crop: float, stats, paths) -> str:
    "The cache key of a feature matrix: backbone, weights file, preprocessing and the images (paths, sizes, mtimes)."
    h = hashlib.sha256(repr((arch, str(weights), size, round(float(crop), 6), stats)).encode())
    for p in map(Path, paths):
        st = p.stat()
        h.update(f'{p}|{st.st_size}|{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def features(body: torch.nn.Module, paths, size: int, crop: float, stats, key: str | None = None, bs: int = 64,
             flip: bool = False, runtime: Runtime | None = None) -> np.ndarray:
    """Pooled features of `body` (a timm model with `num_classes=0`) on image paths at the runtime's precision;
    cached on disk under `key` and the precision they were computed in."""
    dev, rt = default_device(), runtime or Runtime()
    prec = resolve_precision(rt, dev)
    cache = cache_root() / 'features' / f'{key}{"-flip" if flip else ""}{"" if prec == "fp32" else "-" + prec}.npy' if key else None
    if cache is not None and cache.is_file(): return np.load(cache)
    body = folded_inference_model(body, rt, dev)
    out = []
    dl = infer_dl(list(map(str, paths)), size, crop, bs=bs, num_workers=rt.num_workers, device=dev, stats=stats,
                  cache=rt.cache)
    for (xb,) in progress(dl, len(dl), 'features'):
        xb = xb.as_subclass(torch.Tensor)   # fastai's TensorImage breaks a torch.compile'd model's tracing
        with autocast_ctx(rt, dev):
            f = body(xb.flip(-1) if flip else xb).float()
        out.append(f.cpu())
    feats = torch.cat(out).numpy().astype(np.float32)
    if cache is not None: save_npy(cache, feats)
    return feats


def cv_folds(y: np.ndarray, groups=None, k: int = 3, seed: int = 0):
    "`k` cross-validation folds of the probe: by group (person, photo) when given, so that C is not chosen on leaks."
    if groups is None or len(np.unique(groups)) < k: return k
    folds = list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, np.asarray(groups)))
    classes = np.unique(y)
    return folds if all(len(np.unique(y[tr])) == len(classes) for tr, _ in folds) else k   # too few people of a class


def fit_head(feats: np.ndarray, y: np.ndarray, n_out: int, C: float | None = None, balanced: bool = True,
             seed: int = 0, groups=None) -> tuple[torch.Tensor, torch.Tensor]:
    "Weight (n_out, d) and bias (n_out,) of a linear layer equal to a logistic regression fitted on `feats`."
    weight = 'balanced' if balanced else None
    with threadpool_limits(1, user_api='blas'):   # see the module docstring: 0.5 s instead of 7 beside torch's threads
        if C is None and min(np.bincount(y)[np.unique(y)]) >= 3:   # enough of every class for 3-fold cross-validation
            with warnings.catch_warnings():   # scikit-learn 1.8's notices of its coming API changes, not the user's concern
                warnings.simplefilter('ignore', FutureWarning)
                lr = LogisticRegressionCV(Cs=list(PROBE_CS), cv=cv_folds(y, groups, 3, seed),
                                          scoring=make_scorer(f1_score, average='macro'),
                                          max_iter=2000, class_weight=weight, random_state=seed).fit(feats, y)
        else:
            lr = LogisticRegression(C=C or PROBE_CS[1], max_iter=2000, class_weight=weight, random_state=seed).fit(feats, y)
    W, b = np.zeros((n_out, feats.shape[1])), np.full(n_out, -1e4)   # classes absent from `y`: never predicted
    coef, icpt = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2: coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, icpt[0]])
    W[lr.classes_], b[lr.classes_] = coef, icpt
    return torch.tensor(W, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)


def set_head(model: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Module:
    "Write a linear head into a timm model's classifier (in place, through a DDP wrapper too); returns the model."
    head = get_model(model).get_classifier()
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight))
        head.bias.copy_(bias.to(head.bias))
    return model
