"""What the app page and its exported Space share, with PIL and numpy alone: reading an upload, the model input.

This module imports nothing from fastmask (nor torch): `fastmask app RUN_DIR --export DIR` copies it verbatim beside
the exported `app.py`, which runs with onnxruntime and Gradio only. What it duplicates from the package is tested to
stay equal to it (`tests/test_app.py`): `model_input` gives the pixels of `fastmask.data.imagecache.decode_image`
normalised as `fastmask predict` does, and the class names are `fastmask.labels`'.

An upload is either a photo (any format PIL reads, EXIF-rotated upright, CMYK / greyscale / palette / RGBA
converted to RGB, each said in a note) or one `UploadError` line naming the problem: missing, 0 bytes, too many
bytes or pixels, not an image, damaged.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ['UploadError', 'MAX_BYTES', 'MAX_PIXELS', 'read_image', 'crop_box', 'model_input', 'REPORT_CROP',
           'REPORT_MEAN', 'REPORT_STD', 'MASKS', 'GENDERS', 'AGES', 'SPLIT', 'class_names', 'task_names',
           'split_probs', 'face_result']

MAX_BYTES = 20_000_000          # an upload larger than this is refused
MAX_PIXELS = 40_000_000         # ... and one of more pixels than this (a decompression bomb is refused unread)
REPORT_CROP = 350 / 384         # fastmask.data.augment.REPORT_CROP
REPORT_MEAN, REPORT_STD = (0.548, 0.504, 0.479), (0.237, 0.247, 0.246)   # the report's normalisation (older runs)
MASKS, GENDERS, AGES = ('wear', 'incorrect', 'not_wear'), ('male', 'female'), ('<30', '30-59', '>=60')
SPLIT = ('mask', 'gender', 'age')
_ORIENTATION = 274              # the EXIF tag of the camera's rotation (1: upright)


class UploadError(ValueError):
    "An upload that is not a usable photo; its message is one line naming the file and the problem."


def _mb(n: int) -> str: return f'{n / 1e6:.1f} MB' if n >= 100_000 else f'{n / 1e3:.0f} kB'


def read_image(path, name: str | None = None) -> tuple[Image.Image, list[str]]:
    """An uploaded file as an upright RGB image and notes on what was done to it (rotated, converted);
    `UploadError` (one line) for anything that is not a usable photo. `name`: how to call it (default its file name)."""
    p = Path(path) if path else None
    name = name or (p.name if p else 'upload')
    if p is None or not p.is_file(): raise UploadError(f'{name}: no file was received')
    size = p.stat().st_size
    if size == 0: raise UploadError(f'{name}: the file is empty (0 bytes)')
    if size > MAX_BYTES: raise UploadError(f'{name}: {_mb(size)}, larger than the {_mb(MAX_BYTES)} limit')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)   # our own pixel limit is lower
            with Image.open(p) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise UploadError(f'{name}: {w}x{h} pixels, more than the {MAX_PIXELS // 1_000_000}-megapixel limit')
                mode, fmt = im.mode, im.format or 'image'
                turn = im.getexif().get(_ORIENTATION, 1)
                im.load()
                upright = ImageOps.exif_transpose(im)
                rgb = upright.convert('RGB')
    except UploadError: raise
    except Image.DecompressionBombError:
        raise UploadError(f'{name}: too many pixels (more than the {MAX_PIXELS // 1_000_000}-megapixel limit)') from None
    except UnidentifiedImageError:
        raise UploadError(f'{name}: not an image (no image format recognised in its {size} bytes)') from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UploadError(f'{name}: damaged or truncated image ({why})') from None
    notes = []
    if turn not in (1, None): notes.append(f'rotated upright by its EXIF orientation ({turn})')
    if mode != 'RGB': notes.append(f'{fmt} in {mode} converted to RGB')
    return rgb, notes


def crop_box(w: int, h: int, frac: float) -> tuple[int, int, int, int]:
    "torchvision's CenterCrop box for a square of side `frac * width` (clamped to the height): fastmask's `crop_box`."
    s = min(int(round(frac * w)), w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    return left, top, left + s, top + s


def model_input(image: Image.Image, size: int, crop: float = REPORT_CROP, stats=None) -> np.ndarray:
    """A (3, size, size) float32 array of an RGB image as the models see it: centre crop of side `crop` x width,
    bilinear squish to `size`, /255, normalised by `stats` = (mean, std) (default the report's)."""
    im = image.convert('RGB')
    if crop: im = im.crop(crop_box(*im.size, crop))
    x = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean, std = stats or (REPORT_MEAN, REPORT_STD)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def class_names() -> list[str]:
    "The 18 class names in id order (class = mask * 6 + gender * 3 + age group), e.g. `wear/male/<30`."
    return [f'{m}/{g}/{a}' for m in MASKS for g in GENDERS for a in AGES]


def task_names(task: str) -> list[str]:
    "Class names of one task ('all', 'mask', 'gender', 'age')."
    return {'all': class_names(), 'mask': list(MASKS), 'gender': list(GENDERS), 'age': list(AGES)}[task]


def split_probs(p18) -> dict[str, np.ndarray]:
    "The 18 classes and their mask, gender and age marginals, by task, for rows of 18-class probabilities."
    p = np.asarray(p18, dtype=np.float64).reshape(-1, 3, 2, 3)
    return {'all': p.reshape(-1, 18), 'mask': p.sum((2, 3)), 'gender': p.sum((1, 3)), 'age': p.sum((1, 2))}


def face_result(probs: dict, i: int = 0, box=None, method: str = '') -> dict:
    """One face's answer from per-task probability rows (`probs[task][i]`): the 18-class label and its probability
    when the run predicts 18 classes (else the label of the tasks it has), the per-task probabilities, its box."""
    tasks = {t: [float(v) for v in np.asarray(probs[t][i])] for t in ('all', *SPLIT) if t in probs}
    if 'all' in tasks:
        k = int(np.argmax(tasks['all']))
        label, p = class_names()[k], tasks['all'][k]
    else:
        best = {t: int(np.argmax(v)) for t, v in tasks.items()}
        k, label = None, '/'.join(task_names(t)[c] for t, c in best.items())
        p = float(np.prod([tasks[t][c] for t, c in best.items()]))
    return dict(label=label, cls=k, p=p, tasks={t: v for t, v in tasks.items() if t != 'all'},
                box=None if box is None else [round(float(v), 1) for v in box], method=method)
