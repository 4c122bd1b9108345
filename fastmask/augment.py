"""The report's transforms as fastai pieces: centre crop, and batch-level flip + (affine | colour jitter)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fastai.vision.all import (IntToFloatTensor, Normalize, PILImage, RandTransform, Resize, ResizeMethod,
                               TensorImage, ToTensor, Transform)
from PIL import Image, ImageOps

__all__ = ['REPORT_MEAN', 'REPORT_STD', 'REPORT_CROP', 'FaceImage', 'CenterCropFrac', 'ReportAugment',
           'item_tfms', 'batch_tfms']

REPORT_MEAN = (0.548, 0.504, 0.479)
REPORT_STD = (0.237, 0.247, 0.246)
REPORT_CROP = 350 / 384


class FaceImage(PILImage):
    "A PILImage opened with its EXIF rotation applied and converted to RGB (greyscale, RGBA, palette, CMYK)."
    @classmethod
    def create(cls, fn, **kwargs):
        if isinstance(fn, Image.Image): return cls(fn.convert('RGB'))
        with Image.open(fn) as im:
            im = ImageOps.exif_transpose(im)
            return cls(im.convert('RGB'))


def crop_box(w: int, h: int, frac: float) -> tuple[int, int, int, int]:
    "torchvision's CenterCrop box for a square of side `frac * width` (clamped to the height)."
    s = min(int(round(frac * w)), w, h)
    left, top = int(round((w - s) / 2.0)), int(round((h - s) / 2.0))
    return left, top, left + s, top + s


class CenterCropFrac(Transform):
    "Centre square crop whose side is `frac` of the image width (350/384 in the report)."
    order = 1
    def __init__(self, frac: float = REPORT_CROP): self.frac = frac
    def encodes(self, x: PILImage): return x if not self.frac else x.crop(crop_box(*x.size, self.frac))


def _rotate(x: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    "Rotate a batch by per-item angles (degrees) about the centre, zero fill like RandomAffine."
    t = deg * math.pi / 180
    cos, sin, zero = t.cos(), t.sin(), torch.zeros_like(t)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def _jitter(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    "torchvision's brightness, contrast and saturation adjustments with per-item factors."
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    x = (x * b).clamp(0, 1)
    mean = (x * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = ((x - mean) * c + mean).clamp(0, 1)
    gray = (x * w).sum(1, keepdim=True)
    return ((x - gray) * s + gray).clamp(0, 1)


class ReportAugment(RandTransform):
    "Per item: flip with p=0.5, then either an affine of +-`deg` degrees or a colour jitter of `jitter` (training only)."
    order, split_idx = 50, 0

    def __init__(self, deg: float = 3.0, jitter: float = 0.1, flip: float = 0.5):
        super().__init__(p=1.0)
        self.deg, self.jitter, self.flip = deg, jitter, flip

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        x = b[0] if isinstance(b, tuple) else b
        n, dev = x.shape[0], x.device
        u = lambda lo, hi: torch.empty(n, device=dev).uniform_(lo, hi).view(n, 1, 1, 1)
        self.do_flip = torch.rand(n, device=dev) < self.flip
        self.do_affine = torch.rand(n, device=dev) < 0.5
        self.angle = u(-self.deg, self.deg).view(n)
        j = self.jitter
        self.bcs = u(1 - j, 1 + j), u(1 - j, 1 + j), u(1 - j, 1 + j)

    def encodes(self, x: TensorImage):
        m = self.do_flip.view(-1, 1, 1, 1)
        x = torch.where(m, x.flip(-1), x)
        rot = _rotate(x, torch.where(self.do_affine, self.angle, torch.zeros_like(self.angle)))
        jit = _jitter(x, *self.bcs)
        return TensorImage(torch.where(self.do_affine.view(-1, 1, 1, 1), rot, jit))


def item_tfms(size: int, crop: float = REPORT_CROP) -> list:
    "Per-image transforms: centre crop then squish-resize to `size` x `size`."
    return [CenterCropFrac(crop), Resize(size, method=ResizeMethod.Squish)]


def batch_tfms(augment: bool = True, mean=REPORT_MEAN, std=REPORT_STD) -> list:
    "Batch transforms: the report's augmentations (training only) and normalisation."
    return ([ReportAugment()] if augment else []) + [Normalize.from_stats(mean, std)]
