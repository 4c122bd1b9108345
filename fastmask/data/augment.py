"""The report's transforms as fastai pieces: centre crop, and batch-level flip + (affine | colour jitter)."""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from fastai.vision.all import (IntToFloatTensor, Normalize, PILImage, RandomErasing, RandomResizedCropGPU, RandTransform,
                               Resize, ResizeMethod, TensorImage, Transform)
from PIL import Image, ImageOps
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as TF

__all__ = ['REPORT_MEAN', 'REPORT_STD', 'REPORT_CROP', 'FaceImage', 'CenterCropFrac', 'ToFloatImage', 'ReportAugment', 'CameraAugment',
           'flip_rotate', 'jitter_matrices', 'colour_to_float', 'item_tfms', 'batch_tfms']

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


class ToFloatImage(IntToFloatTensor):
    "uint8 images to floats in [0, 1]; images already float (augmented) pass through."
    def encodes(self, o: TensorImage): return o if o.is_floating_point() else o.float().div_(self.div)


def flip_rotate(x: torch.Tensor, deg: torch.Tensor, flip: torch.Tensor | None = None) -> torch.Tensor:
    "Per item: flip where `flip`, then rotate `deg` degrees counter-clockwise (nearest, zero fill); one gather, any dtype."
    n, c, h, w = x.shape
    t = deg.float().to(x.device).view(n, 1, 1) * (math.pi / 180)
    cos, sin = t.cos(), t.sin()
    px = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w) + (0.5 - w / 2)   # pixel centres
    py = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1) + (0.5 - h / 2)
    ax, bx = cos * px + (w / 2 - 0.5), sin * py            # source column = ax - bx, as torchvision's affine grid
    if flip is not None:                                     # flipped first: column -> w - 1 - column
        f = flip.to(x.device).view(n, 1, 1)
        ax, bx = torch.where(f, (w - 1) - ax, ax), torch.where(f, -bx, bx)
    ix = (ax - bx).round_().clamp_(-1, w)                    # -1 and w land on the zero border
    iy = (sin * px + (cos * py + (h / 2 - 0.5))).round_().clamp_(-1, h)
    idx = iy.add_(1).mul_(w + 2).add_(ix.add_(1)).long().view(n, 1, -1).expand(n, c, h * w)
    xp = F.pad(x, (1, 1, 1, 1)).reshape(n, c, (h + 2) * (w + 2))
    return torch.gather(xp, 2, idx).view(n, c, h, w)


_GREY = (0.299, 0.587, 0.114)
ORDERS = tuple(itertools.permutations(range(3)))   # ColorJitter applies brightness, contrast, saturation in random order


def jitter_matrices(means: torch.Tensor, b, c, s, order) -> tuple[torch.Tensor, torch.Tensor]:
    "Per-item 3x3 matrix and bias of brightness `b`, contrast `c`, saturation `s` in `order`, given channel `means`."
    n, dev = len(means), means.device
    w = means.new_tensor(_GREY)
    eye = torch.eye(3, device=dev).expand(n, 3, 3)
    m, t = eye.clone(), torch.zeros(n, 3, device=dev)
    perms = torch.tensor(ORDERS, device=dev)[order]                 # (n, 3)
    sat = s.view(n, 1, 1) * eye + (1 - s.view(n, 1, 1)) * w.view(1, 1, 3).expand(n, 3, 3)
    for k in range(3):
        op = perms[:, k].view(n, 1, 1)
        grey_mean = ((m @ means.unsqueeze(-1)).squeeze(-1) + t) @ w  # mean grey of the image so far
        mb, tb = b.view(n, 1, 1) * m, b.view(n, 1) * t
        mc, tc = c.view(n, 1, 1) * m, c.view(n, 1) * t + ((1 - c.view(n)) * grey_mean).view(n, 1)
        ms, ts = sat @ m, (sat @ t.unsqueeze(-1)).squeeze(-1)
        m = torch.where(op == 0, mb, torch.where(op == 1, mc, ms))
        t = torch.where(op.view(n, 1) == 0, tb, torch.where(op.view(n, 1) == 1, tc, ts))
    return m, t


def colour_to_float(x: torch.Tensor, m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    "clamp(m @ pixel + t, 0, 1) per item, from uint8 (scaled by 1/255) or float pixels."
    n, c, h, w = x.shape
    scale = 1 / 255 if not x.is_floating_point() else 1.0
    out = torch.baddbmm(t.unsqueeze(-1), m * scale, x.reshape(n, c, h * w).float())
    return out.clamp_(0, 1).view(n, c, h, w)


class ReportAugment(RandTransform):
    "Per item: flip (p=0.5), then RandomAffine(`deg`) or ColorJitter(`jitter` x3), as the report; uint8 in, float out."
    order, split_idx = 5, 0

    def __init__(self, deg: float = 3.0, jitter: float = 0.1, flip: float = 0.5):
        super().__init__(p=1.0)
        self.deg, self.jitter, self.flip = deg, jitter, flip

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        x = b[0] if isinstance(b, tuple) else b
        n, dev = x.shape[0], x.device
        u = lambda lo, hi: torch.empty(n, device=dev).uniform_(lo, hi)
        self.do_flip = torch.rand(n, device=dev) < self.flip
        self.do_affine = torch.rand(n, device=dev) < 0.5   # RandomChoice of the two
        self.angle = u(-self.deg, self.deg)
        j = self.jitter
        self.bcs = u(1 - j, 1 + j), u(1 - j, 1 + j), u(1 - j, 1 + j)
        self.jitter_order = torch.randint(len(ORDERS), (n,), device=dev)

    def encodes(self, x: TensorImage):
        x = x.as_subclass(torch.Tensor)   # plain tensor ops: fastai's TensorBase dispatch is slow on big batches
        moved = (self.do_flip | self.do_affine).nonzero().flatten()
        if len(moved):
            x = x.clone()
            angle = torch.where(self.do_affine, self.angle, torch.zeros_like(self.angle))
            x[moved] = flip_rotate(x[moved], angle[moved], self.do_flip[moved])
        n, c, h, w = x.shape
        xf = x.reshape(n, c, h * w).float()
        if not x.is_floating_point(): xf = xf.mul_(1 / 255)
        m, t = jitter_matrices(xf.mean(2), *self.bcs, self.jitter_order)
        keep = self.do_affine.view(-1, 1, 1)   # affine items get no colour change
        m = torch.where(keep, torch.eye(3, device=x.device).expand_as(m), m)
        t = torch.where(keep.view(-1, 1), torch.zeros_like(t), t)
        return TensorImage(colour_to_float(xf.view(n, c, h, w), m, t))


class CameraAugment(RandTransform):
    """Per item with probability `p`: the look of another camera, each part with probability 1/2: down-scaled to
    `scale` of its side and back (a small or soft photo), JPEG at `quality`, Gaussian blur; uint8 in, uint8 out."""
    order, split_idx = 4, 0   # before ReportAugment turns the uint8 batch into floats

    def __init__(self, p: float = 0.5, scale=(0.3, 0.9), quality=(25, 90), sigma=(0.3, 1.5)):
        super().__init__(p=1.0)
        self.prob, self.scale, self.quality, self.sigma = p, scale, quality, sigma

    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        x = b[0] if isinstance(b, tuple) else b
        n = x.shape[0]
        on = torch.rand(n) < self.prob
        self.parts = on[:, None] & (torch.rand(n, 3) < 0.5)              # (down-scale, JPEG, blur) per item
        self.factor = torch.empty(n).uniform_(*self.scale)
        self.q = torch.randint(self.quality[0], self.quality[1] + 1, (n,))
        self.s = torch.empty(n).uniform_(*self.sigma)

    def encodes(self, x: TensorImage):
        if x.is_floating_point() or not self.parts.any(): return x
        x = x.as_subclass(torch.Tensor).clone()
        h, w = x.shape[-2:]
        for i in self.parts.any(1).nonzero().flatten().tolist():
            img = x[i]
            if self.parts[i, 0]:
                small = [max(8, round(h * float(self.factor[i]))), max(8, round(w * float(self.factor[i])))]
                img = TF.resize(TF.resize(img, small, antialias=True), [h, w], antialias=True)
            if self.parts[i, 1]: img = decode_jpeg(encode_jpeg(img.cpu(), quality=int(self.q[i]))).to(x.device)
            if self.parts[i, 2]: img = TF.gaussian_blur(img, [5, 5], [float(self.s[i])])
            x[i] = img
        return TensorImage(x)


def item_tfms(size: int, crop: float = REPORT_CROP) -> list:
    "Per-image transforms: centre crop then squish-resize to `size` x `size`."
    return [CenterCropFrac(crop), Resize(size, method=ResizeMethod.Squish)]


def batch_tfms(augment: bool = True, mean=REPORT_MEAN, std=REPORT_STD, size: int | None = None, rrc_scale: float = 1.0,
               cutout: float = 0.0, camera: float = 0.0) -> list:
    """Batch transforms: uint8 -> float, the report's augmentations (training only) and normalisation.

    Beyond the report (training only): fastai's `RandomResizedCropGPU` keeping at least `rrc_scale` of the area
    (1.0 = off; needs `size`), `RandomErasing` (cutout) with probability `cutout` after normalisation, and
    `CameraAugment` (another camera's look) with probability `camera` before the report's augmentations."""
    tfms = [ToFloatImage()] + ([ReportAugment()] if augment else []) + [Normalize.from_stats(mean, std)]
    if augment and camera > 0: tfms.append(CameraAugment(camera))
    if augment and rrc_scale < 1.0 and size: tfms.append(RandomResizedCropGPU(size, min_scale=rrc_scale))
    if augment and cutout > 0: tfms.append(RandomErasing(p=cutout, max_count=1))
    return tfms
