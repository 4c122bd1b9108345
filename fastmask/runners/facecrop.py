"""Face-crop preprocessing: MTCNN, then OpenCV's bundled cascade for misses, then the original image; cached crops."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import replace as dc_replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from fastmask.io import cache_root
from fastmask.errors import MissingExtraError
from fastmask.io import atomic_path, read_json, write_csv, write_json
from fastmask.sources.datasource import DataSource
from fastmask.recipes.registry import Recipe
from fastmask.inference.predict import predict_paths, write_submission
from fastmask.inference.scoring import score_eval
from fastmask.rundir import RunDir
from fastmask.runners.registry import register_hook, register_runner
from fastmask.runners.train import run_train
from fastmask.runspec import RunSpec

__all__ = ['run_recipe_of', 'DETECTORS', 'INSTALL_HINT', 'crop_cache', 'cache_key', 'square_box', 'mtcnn_detector', 'cascade_detector', 'dlib_detector',
           'FaceCropper', 'crop_paths', 'run_preprocess', 'run_facecrop']

DETECTORS = ('mtcnn', 'cascade')
INSTALL_HINT = "pip install --no-deps facenet-pytorch && pip install opencv-python-headless"


def _missing(package: str, msg: str = '') -> MissingExtraError:
    "MissingExtraError whose one-line message gives the install commands (facenet-pytorch needs --no-deps)."
    e = MissingExtraError(package, 'facecrop', 'face cropping')
    e.msg = msg or (f"face cropping needs the optional package '{package}': {INSTALL_HINT} "
                    "(facenet-pytorch with --no-deps: its pinned torch would replace yours)")
    e.args = (e.msg,)
    return e


def crop_cache() -> Path:
    "The folder of cached crops: `cache_root()/facecrop`."
    p = cache_root() / 'facecrop'
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_key(path, margin: float, detectors) -> str:
    "Key of one image's crop: absolute path, size and mtime of the file, and the crop settings."
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f'{p}|{st.st_size}|{st.st_mtime_ns}|{margin}|{",".join(detectors)}'.encode()).hexdigest()


def square_box(box, w: int, h: int, margin: float) -> tuple[int, int, int, int]:
    "A square around `box` (x0, y0, x1, y1) grown by `margin` of its side, shifted and clamped into the image."
    x0, y0, x1, y1 = map(float, box)
    side = int(min(np.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)), w, h))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(np.floor(cx - side / 2), 0), w - side))
    top = int(min(max(np.floor(cy - side / 2), 0), h - side))
    return left, top, left + side, top + side


def mtcnn_detector(batch_size: int = 8, min_prob: float = 0.9):
    "`f(list of PIL images) -> list of box or None` with facenet-pytorch's MTCNN (weights ship in its wheel)."
    try: from facenet_pytorch import MTCNN
    except ImportError: raise _missing('facenet-pytorch') from None
    net = MTCNN(keep_all=False, select_largest=True, device='cpu')

    def detect(ims):
        out = []
        for i in range(0, len(ims), batch_size):
            chunk = ims[i:i + batch_size]
            if len({im.size for im in chunk}) > 1: res = [net.detect(im) for im in chunk]
            else:
                boxes, probs = net.detect(chunk)
                res = list(zip(boxes, probs))
            for b, p in res:
                ok = b is not None and len(b) and p[0] is not None and p[0] >= min_prob
                out.append(b[0].tolist() if ok else None)
        return out
    return detect


def cascade_detector(min_frac: float = 0.2):
    "`f(list of PIL images) -> list of box or None` with OpenCV's bundled frontal-face Haar cascade (largest face)."
    try: import cv2
    except ImportError: raise _missing('opencv-python-headless') from None
    xml = os.path.join(getattr(getattr(cv2, 'data', None), 'haarcascades', ''), 'haarcascade_frontalface_default.xml')
    if not hasattr(cv2, 'CascadeClassifier') or not os.path.isfile(xml):
        raise _missing('opencv-python-headless<5', f"OpenCV {cv2.__version__} has no bundled Haar cascades (OpenCV 5 "
                       "dropped them): pip install 'opencv-python-headless<5', or use the 'dlib' detector")
    cc = cv2.CascadeClassifier(xml)

    def detect(ims):
        out = []
        for im in ims:
            g = cv2.equalizeHist(np.asarray(im.convert('L')))
            m = max(24, int(min_frac * min(im.size)))  # faces fill much of these portraits: skip tiny scales
            faces = cc.detectMultiScale(g, scaleFactor=1.1, minNeighbors=5, minSize=(m, m))
            if len(faces) == 0: out.append(None); continue
            x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
            out.append([float(x), float(y), float(x + w), float(y + h)])
        return out
    return detect


def dlib_detector(upsample: int = 0):
    "`f(list of PIL images) -> list of box or None` with dlib's HOG frontal-face detector (needs no weights)."
    try: import dlib
    except ImportError: raise _missing('dlib-bin') from None
    det = dlib.get_frontal_face_detector()

    def detect(ims):
        out = []
        for im in ims:
            faces = det(np.asarray(im), upsample)
            if len(faces) == 0: out.append(None); continue
            f = max(faces, key=lambda r: r.area())
            out.append([float(f.left()), float(f.top()), float(f.right()), float(f.bottom())])
        return out
    return detect


_FACTORIES = {'mtcnn': mtcnn_detector, 'cascade': cascade_detector, 'dlib': dlib_detector}


class FaceCropper:
    "Crop faces from image files with a chain of detectors; crops and their records are cached under `crop_cache()`."
    def __init__(self, detectors=DETECTORS, margin: float = 0.2, batch_size: int = 8, cache=None):
        bad = [d for d in detectors if d not in _FACTORIES]
        if bad: raise ValueError(f"unknown face detector(s) {', '.join(bad)} (one of {', '.join(_FACTORIES)})")
        self.detectors, self.margin, self.batch_size = tuple(detectors), float(margin), batch_size
        self.cache = Path(cache) if cache else crop_cache()
        self._nets = {}

    def _net(self, name):
        if name not in self._nets:
            self._nets[name] = _FACTORIES[name](self.batch_size) if name == 'mtcnn' else _FACTORIES[name]()
        return self._nets[name]

    def _record_path(self, key: str) -> Path: return self.cache / key[:2] / f'{key}.json'

    def lookup(self, path) -> dict | None:
        "The cached record of an image (method, box, crop path) if its crop is current."
        rec = self._record_path(cache_key(path, self.margin, self.detectors))
        if not rec.is_file(): return None
        r = read_json(rec)
        return r if Path(r['crop']).is_file() else None

    def _crop_new(self, paths: list[str]) -> list[dict]:
        ims = []
        for p in paths:
            with Image.open(p) as im: ims.append(ImageOps.exif_transpose(im).convert('RGB'))
        boxes, methods = [None] * len(ims), ['original'] * len(ims)
        for name in self.detectors:
            todo = [i for i, b in enumerate(boxes) if b is None]
            if not todo: break
            for i, b in zip(todo, self._net(name)([ims[i] for i in todo])):
                if b is not None: boxes[i], methods[i] = b, name
        recs = []
        for p, im, b, m in zip(paths, ims, boxes, methods):
            key = cache_key(p, self.margin, self.detectors)
            crop = str(Path(p).resolve())
            if b is not None:
                sq = square_box(b, *im.size, self.margin)
                out = self.cache / key[:2] / f'{key}.jpg'
                with atomic_path(out, '.jpg') as tmp: im.crop(sq).save(tmp, format='JPEG', quality=95)
                crop = str(out)
            rec = dict(source=str(p), method=m, box=[round(v, 1) for v in b] if b is not None else None, crop=crop)
            write_json(self._record_path(key), rec)
            recs.append(rec)
        return recs

    def __call__(self, paths, log=None) -> tuple[list[str], Counter, Counter]:
        "Crop paths for `paths` (in order), the detection counts, and how many were new (vs cached)."
        paths = [str(p) for p in paths]
        recs = [self.lookup(p) for p in paths]
        todo = [i for i, r in enumerate(recs) if r is None]
        for k in range(0, len(todo), 64):
            idx = todo[k:k + 64]
            for i, r in zip(idx, self._crop_new([paths[i] for i in idx])): recs[i] = r
            if log: log(f'face crop: {min(k + 64, len(todo))}/{len(todo)} new images')
        counts = Counter(r['method'] for r in recs)
        return [r['crop'] for r in recs], Counter({m: counts.get(m, 0) for m in (*self.detectors, 'original')}), \
            Counter(new=len(todo), cached=len(paths) - len(todo))


def _settings(r: Recipe) -> dict:
    return dict(detectors=tuple(r.detectors), margin=float(r.margin))


def run_recipe_of(run_dir) -> Recipe | None:
    "The recipe a run folder recorded (older folders' `extras` read as typed fields), or None without one."
    cfg = RunDir(run_dir).config_or_empty()
    return Recipe.from_dict(cfg['recipe']) if 'recipe' in cfg else None


def crop_paths(paths, detectors=DETECTORS, margin: float = 0.2, log=None):
    "Crop paths (cached), counts per method, and new/cached counts for image `paths`."
    return FaceCropper(detectors, margin)(paths, log=log)


@register_hook('facecrop', 'preprocess')
def run_preprocess(run_dir, paths) -> list[str]:
    "The image paths a run's models expect: face crops when the run's recipe recorded `preprocess='facecrop'`."
    paths, r = [str(p) for p in paths], run_recipe_of(run_dir)
    if r is None or r.preprocess != 'facecrop': return paths
    return crop_paths(paths, **_settings(r))[0]


def _cropped(df: pd.DataFrame, cropper: FaceCropper, log) -> tuple[pd.DataFrame, dict]:
    crops, counts, fresh = cropper(df['path'], log=log)
    return df.assign(path=crops), dict(counts, **fresh, total=len(df))


@register_runner('facecrop')
def run_facecrop(spec: RunSpec, src: DataSource, run_dir: Path, *, splits=None, cbs=(), log=print) -> dict:
    "Crop train and eval faces, train on the crops (`run_train`), and predict the eval images through the crops."
    rd = RunDir(run_dir)
    cropper = FaceCropper(**_settings(spec.recipe))
    for d in cropper.detectors: cropper._net(d)  # a missing extra fails here, before any work
    train, tc = _cropped(src.train, cropper, log)
    report = dict(detectors=list(cropper.detectors), margin=cropper.margin, train=tc)
    if src.eval is not None: report['eval'] = _cropped(src.eval, cropper, log)[1]
    write_json(rd.facecrop, report)
    summary = run_train(spec, dc_replace(src, train=train, eval=None, truth=None), run_dir, splits=splits, cbs=cbs, log=log)
    vp = rd.valid_preds
    if vp.is_file():  # original paths, so the run aligns with other runs in an ensemble
        v = pd.read_csv(vp)
        back = dict(zip(train['path'].astype(str), src.train['path'].astype(str)))
        write_csv(vp, v.assign(path=v['path'].astype(str).map(back).fillna(v['path'])))
    if src.eval is not None and rd.valid_probs.is_file():
        ep = predict_paths(run_dir, src.eval['path'], runtime=spec.runtime)  # crops through run_preprocess
        write_submission(rd.submission, src.eval, ep)
        summary.update(score_eval(src, ep))
    summary['facecrop'] = report
    return summary
