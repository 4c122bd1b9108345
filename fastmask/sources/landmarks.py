"""Five facial landmarks (eyes, nose, mouth corners): MTCNN from facenet-pytorch, with a template for aligned crops."""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ['TEMPLATE', 'DETECTORS', 'check_detector', 'template_landmarks', 'plausible', 'LandmarkDetector']

#: UTKFace-style aligned crops: left eye, right eye, nose, left and right mouth corner as fractions of width/height
TEMPLATE = np.array([[0.235, 0.205], [0.69, 0.205], [0.465, 0.49], [0.255, 0.665], [0.665, 0.67]], dtype=np.float32)
DETECTORS = ('auto', 'mtcnn', 'template')


def check_detector(detector: str) -> str:
    "`detector` if it is one of `DETECTORS`, else a ValueError naming them."
    if detector not in DETECTORS: raise ValueError(f"unknown detector '{detector}' (one of {', '.join(DETECTORS)})")
    return detector


def template_landmarks(w: int, h: int) -> np.ndarray:
    "The template's five points for a `w` x `h` aligned face crop."
    return TEMPLATE * np.array([w, h], dtype=np.float32)


def plausible(lm: np.ndarray, w: int, h: int) -> bool:
    "Eyes above nose above mouth, a sensible eye distance and the points near the image."
    lm = np.asarray(lm, dtype=np.float32)
    if lm.shape != (5, 2) or not np.isfinite(lm).all(): return False
    eyes, nose, mouth = lm[:2].mean(0), lm[2], lm[3:].mean(0)
    d = float(np.linalg.norm(lm[1] - lm[0]))
    if not 0.1 * min(w, h) <= d <= 0.9 * max(w, h): return False
    if not eyes[1] < nose[1] < mouth[1] or lm[0][0] >= lm[1][0]: return False
    return bool((lm > -0.25 * np.array([w, h])).all() and (lm < 1.25 * np.array([w, h])).all())


class LandmarkDetector:
    "Callable: list of PIL images -> list of (5x2 landmarks, used_template); MTCNN where available, else the template."
    def __init__(self, detector: str = 'auto', min_prob: float = 0.9, batch: int = 16):
        check_detector(detector)
        self.min_prob, self.batch, self.mtcnn = min_prob, batch, None
        if detector != 'template':
            try:
                from facenet_pytorch import MTCNN
                self.mtcnn = MTCNN(keep_all=False, device='cpu')
            except ImportError:
                if detector == 'mtcnn':
                    from fastmask.errors import FastmaskError
                    raise FastmaskError("the MTCNN landmark detector needs facenet-pytorch: pip install --no-deps "
                                        "facenet-pytorch (or use --detector template)") from None
        self.name = 'mtcnn' if self.mtcnn is not None else 'template'

    def _detect(self, ims: list[Image.Image]) -> list:
        "MTCNN landmarks (or None) per image; one batched call when the sizes agree."
        if len({im.size for im in ims}) == 1: groups = [ims]
        else: groups = [[im] for im in ims]
        out = []
        for g in groups:
            _, probs, lms = self.mtcnn.detect(g if len(g) > 1 else g[0], landmarks=True)
            if len(g) == 1: probs, lms = [probs], [lms]
            for p, lm in zip(probs, lms):
                ok = lm is not None and p is not None and p[0] is not None and float(p[0]) >= self.min_prob
                out.append(np.asarray(lm[0], dtype=np.float32) if ok else None)
        return out

    def __call__(self, ims: list[Image.Image]) -> list[tuple[np.ndarray, bool]]:
        found = [None] * len(ims)
        if self.mtcnn is not None:
            found = []
            for i in range(0, len(ims), self.batch): found += self._detect(ims[i:i + self.batch])
        res = []
        for im, lm in zip(ims, found):
            if lm is not None and plausible(lm, *im.size): res.append((lm, False))
            else: res.append((template_landmarks(*im.size), True))
        return res
