"""Where the faces in a photo are, for the app: the run's own face crop, MTCNN, or the whole photo, and why.

- A face-crop run (its recipe, or a fold's / member's, says `preprocess='facecrop'`) crops as it always does: its
  detector chain and margin (`runners.facecrop.FaceCropper`, the largest face), so the answer is what
  `fastmask predict` gives for the photo. The crops are written into the request's folder, not the shared cache.
- Any other run: every face MTCNN (facenet-pytorch) finds with probability >= `MIN_PROB`, each a square crop grown
  by `MARGIN` (`runners.facecrop.square_box`), up to `MAX_FACES`, left to right; none found, or facenet-pytorch not
  installed: the whole photo. Asked for the whole photo: the whole photo.

The detectors are loaded once, when the app starts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fastmask.runners.facecrop import INSTALL_HINT, FaceCropper, run_recipe_of, square_box
from fastmask.tools.evaluate import run_parts

__all__ = ['Face', 'FaceFinder', 'facecrop_settings', 'MIN_PROB', 'MARGIN', 'MAX_FACES', 'DETECT_SIDE']

MIN_PROB, MARGIN, MAX_FACES = 0.9, 0.2, 10
DETECT_SIDE = 1280        # faces are searched on a copy at most this many pixels a side; crops come from the photo


@dataclass(frozen=True)
class Face:
    "One face: the image file the models see, its box in the photo (None: the whole photo) and who found it."
    path: str
    box: tuple | None
    method: str


def facecrop_settings(run_dir) -> dict | None:
    "The face-crop settings (detectors, margin) of a run or of its first face-crop fold / member; None without."
    r = run_recipe_of(run_dir)
    if r is not None and r.preprocess == 'facecrop': return dict(detectors=tuple(r.detectors), margin=float(r.margin))
    for part in run_parts(run_dir):
        if (s := facecrop_settings(part)) is not None: return s
    return None


def _mtcnn():
    "facenet-pytorch's MTCNN keeping every face, or (None, why not)."
    try: from facenet_pytorch import MTCNN
    except ImportError: return None, f'facenet-pytorch is not installed ({INSTALL_HINT})'
    return MTCNN(keep_all=True, device='cpu'), ''


class FaceFinder:
    "Finds the faces of a photo for one run folder (see the module's docstring); detectors loaded once."
    def __init__(self, run_dir, mtcnn: bool = True):
        self.settings = facecrop_settings(run_dir)
        self.cropper, self.mtcnn, self.why = None, None, ''
        if self.settings is not None:
            self.cropper = FaceCropper(**self.settings)
            for d in self.cropper.detectors: self.cropper._net(d)   # load now (a missing extra fails here, as predict would)
        elif mtcnn: self.mtcnn, self.why = _mtcnn()
        else: self.why = 'face detection is off'

    @property
    def how(self) -> str:
        "How this run's photos are searched for faces, for the page."
        if self.cropper is not None:
            return f"the run's own face crop ({', '.join(self.cropper.detectors)}, margin {self.cropper.margin:g})"
        return 'MTCNN (facenet-pytorch)' if self.mtcnn is not None else f'the whole photo: {self.why}'

    @property
    def crops_itself(self) -> bool:
        "Whether the faces found are the run's own preprocessing (its models then take the crops as they are)."
        return self.cropper is not None

    def find(self, image: Image.Image, photo: Path, folder: Path, whole: bool = False) -> tuple[list[Face], str]:
        "The faces of `image` (saved as `photo`), crops written into `folder`, and one line on how they were found."
        if self.cropper is not None: return self._run_crop(photo, folder)
        if whole: return [Face(str(photo), None, 'whole photo')], 'the whole photo, as asked'
        if self.mtcnn is None: return [Face(str(photo), None, 'whole photo')], self.how
        boxes = self._detect(image)
        if not boxes: return [Face(str(photo), None, 'whole photo')], 'no face found by MTCNN: the whole photo'
        faces = []
        for i, b in enumerate(boxes):
            sq = square_box(b, *image.size, MARGIN)
            path = folder / f'face{i + 1}.png'
            image.crop(sq).save(path)
            faces.append(Face(str(path), tuple(round(float(v), 1) for v in b), 'MTCNN'))
        more = f' (the {MAX_FACES} largest shown)' if len(boxes) == MAX_FACES else ''
        return faces, f"{len(faces)} face{'s' if len(faces) > 1 else ''} found by MTCNN{more}"

    def _detect(self, image: Image.Image) -> list[list[float]]:
        scale = min(1.0, DETECT_SIDE / max(image.size))
        im = image if scale == 1 else image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        boxes, probs = self.mtcnn.detect(im)
        if boxes is None: return []
        found = [[v / scale for v in b] for b, p in zip(boxes, probs) if p is not None and p >= MIN_PROB]
        found = sorted(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)[:MAX_FACES]
        return sorted(found, key=lambda b: b[0])

    def _run_crop(self, photo: Path, folder: Path) -> tuple[list[Face], str]:
        self.cropper.cache = folder / 'crops'          # this request's folder: nothing left in the shared cache
        crops, counts, _ = self.cropper([photo])
        rec = self.cropper.lookup(photo) or {}
        method = rec.get('method', 'original')
        if method == 'original':
            return [Face(crops[0], None, 'whole photo')], "the run's own face crop found no face: the whole photo"
        return [Face(crops[0], tuple(rec['box']), method)], f"the run's own face crop (found by {method})"
