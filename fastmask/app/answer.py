"""One photo in, an answer out: read the upload, find the faces, predict each, say how — the "Try it" tab without
the page.

An upload that is not a usable photo gives `Answer.error`, one line naming the problem (`portable.read_image`). A
photo that had to be turned upright or converted to RGB is saved so (lossless) into a folder of its own, deleted
afterwards, where the faces found are cropped too; the crops (or the photo) are predicted by `Predictor`: the
numbers `fastmask predict` gives for those files.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from fastmask.app.faces import FaceFinder
from fastmask.app.portable import UploadError, face_result, read_image
from fastmask.app.predictor import Predictor
from fastmask.app.render import boxed

__all__ = ['Answer', 'Answerer', 'PHOTO']

PHOTO = 'photo.png'       # an upload turned upright / converted to RGB, as the models' loader then reads it
log = logging.getLogger(__name__)


@dataclass
class Answer:
    "What the page shows for one upload: each face's result, the photo with boxes, one line on how; or an error."
    faces: list[dict] = field(default_factory=list)
    image: Image.Image | None = None
    message: str = ''
    error: str = ''
    seconds: float = 0.0


class Answerer:
    "Answers uploads for one run folder; the models and the face detector are loaded once, here."
    def __init__(self, run_dir, mtcnn: bool = True):
        self.predictor = Predictor(run_dir)
        self.finder = FaceFinder(run_dir, mtcnn=mtcnn)
        self._lock = threading.Lock()   # one photo at a time: the models share the CPU anyway

    def __call__(self, path, whole: bool = False, name: str | None = None) -> Answer:
        "The answer for an uploaded file (`whole`: the whole photo, no face search)."
        t0 = time.perf_counter()
        try: image, notes = read_image(path, name)
        except UploadError as e: return Answer(error=str(e), seconds=time.perf_counter() - t0)
        try:
            with self._lock, tempfile.TemporaryDirectory(prefix='fastmask-app-') as tmp:
                photo = Path(path) if not notes else Path(tmp) / PHOTO   # an upright RGB upload is read as it is
                if notes: image.save(photo, compress_level=1)
                faces, how = self.finder.find(image, photo, Path(tmp), whole=whole)
                probs = self.predictor.probs([f.path for f in faces], preprocessed=self.finder.crops_itself)
        except Exception as e:   # the page shows one line, the server's log keeps the traceback
            log.exception('answering %s failed', name or path)
            why = str(e).splitlines()[0] if str(e) else ''
            return Answer(error=f'{name or Path(str(path)).name}: could not be answered ({type(e).__name__}: {why})',
                          seconds=time.perf_counter() - t0)
        results = [face_result(probs, i, f.box, f.method) for i, f in enumerate(faces)]
        secs = time.perf_counter() - t0
        message = '; '.join([how, *notes]) + f' ({secs:.2f} s)'
        return Answer(faces=results, image=boxed(image, results), message=message, seconds=secs)
