"""Practice data from real labelled faces: each face becomes a person with five masks, one worn wrongly, one bare."""
from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from fastmask import labels
from fastmask.sources.faces import (FORMATS, UTK_RACES, Face, draw_mix, pooled_faces, read_faces,  # noqa: F401
                                    source_format, table_faces, utkface_faces)
from fastmask.sources.demo import HEIGHT, PHOTO_STEMS, WIDTH, eval_image_id, write_layout_tables, write_rows
from fastmask.errors import LayoutError
from fastmask.io import atomic_dir, nonempty, write_json
from fastmask.sources.landmarks import LandmarkDetector

__all__ = ['FORMATS', 'Face', 'read_faces', 'source_format', 'pooled_faces', 'draw_mix', 'utkface_faces', 'table_faces', 'person_masks', 'mask_polygon',
           'draw_mask', 'face_alpha', 'render_person', 'make_proxy', 'UTK_RACES', 'FRAMINGS', 'check_framing']

_COLOURS = [(235, 238, 242), (150, 195, 230), (30, 30, 34), (110, 112, 118), (30, 45, 90), (240, 170, 190),
            (215, 195, 165), (200, 40, 50), (60, 140, 80), (250, 210, 60), (120, 60, 160), (245, 130, 40),
            (0, 150, 160), (90, 60, 40)]
#: the default age range of practice faces: adults, as in the competition
ADULTS = (18, 119)
_PATTERNS = ('plain', 'plain', 'stripes', 'dots', 'check', 'two-tone', 'pleats', 'speckle')
#: how much of a source face a portrait shows, as an oval in the face's own frame (eye distances from the eye centre:
#: centre below the eyes, half width, half height), cut to the source image. 'source' (the default): a wide oval with
#: hair and ears where the source crop has them, so a tight UTKFace crop shows as a square and a wide All-Age-Faces
#: crop as an oval with hair. 'face': forehead to chin and cheek to cheek, which every aligned crop holds (a UTKFace
#: crop ends 0.45 eye distances above the eyes and 1.0 either side of their centre), so every source gives the same
#: outline. Measured (recipes/studies/cross-portraits-*): 'face' carries a one-source practice model to another
#: source's portraits better and costs the hair's cues at home and on the mixed practice set, so 'source' stays.
FRAMINGS = dict(source=(0.3, 1.45, 2.0), face=(0.6, 0.95, 1.05))
_SHAPES = ('surgical', 'cup', 'fitted', 'wide')


# ---------------------------------------------------------------- geometry and drawing

def _frame(lm: np.ndarray):
    "Face frame from landmarks: eye centre, unit right and down vectors, eye distance, nose and mouth depths."
    e = lm[:2].mean(0)
    ex = lm[1] - lm[0]
    d = float(np.linalg.norm(ex))
    ex = ex / d
    ey = np.array([-ex[1], ex[0]])
    v_nose = float(np.dot(lm[2] - e, ey)) / d
    v_mouth = float(np.dot(lm[3:].mean(0) - e, ey)) / d
    return e, ex, ey, d, max(v_nose, 0.35), max(v_mouth, v_nose + 0.2, 0.7)


def person_masks(rng: np.random.Generator) -> list[dict]:
    "Six mask designs (five worn, one worn wrongly): distinct colour/pattern/shape combinations."
    colours = rng.permutation(len(_COLOURS))
    out = []
    for k in range(6):
        c = _COLOURS[int(colours[k])]
        other = _COLOURS[int(colours[(k + 7) % len(_COLOURS)])]
        out.append(dict(colour=c, other=other, pattern=str(_PATTERNS[int(rng.integers(len(_PATTERNS)))]),
                        shape=str(_SHAPES[(k + int(rng.integers(4))) % 4] if k < 5 else rng.choice(_SHAPES)),
                        step=int(rng.integers(9, 16))))
    return out


def mask_polygon(lm: np.ndarray, shape: str, state: str = 'wear') -> list[tuple[float, float]]:
    "Mask outline through landmark-derived points: nose bridge to chin (wear), below the nose or on the chin (incorrect)."
    e, ex, ey, d, vn, vm = _frame(lm)
    chin = vm + 0.62
    w_top, w_mid, peak, bulge = dict(surgical=(0.95, 1.02, 0.06, 0.10), cup=(0.80, 1.0, 0.22, 0.30),
                                     fitted=(0.85, 0.98, 0.16, 0.18), wide=(1.05, 1.10, 0.04, 0.05))[shape]
    if state == 'wear': top = vn * 0.42
    elif state == 'below_nose': top = vn + 0.14
    else: top, chin = vm + 0.28, chin + 0.38  # pulled down to the chin
    pts = [(u, top + peak * (abs(u) / w_top) ** 1.5) for u in np.linspace(-w_top, w_top, 11)]
    pts.append((w_mid, (top + vm) / 2 + 0.1))
    cy, ry = max(vm, top + 0.25), chin - max(vm, top + 0.25)
    for a in np.linspace(0, np.pi, 13): pts.append((w_mid * np.cos(a), cy + (ry + bulge * 0.2) * np.sin(a)))
    pts.append((-w_mid, (top + vm) / 2 + 0.1))
    return [tuple(e + d * (u * ex + v * ey)) for u, v in pts]


def _pattern(size: tuple[int, int], m: dict, rng: np.random.Generator) -> Image.Image:
    "A patterned RGB patch of `size` in the mask's colours."
    w, h = size
    im = Image.new('RGB', size, m['colour'])
    d, o, s = ImageDraw.Draw(im), m['other'], m['step']
    p = m['pattern']
    if p == 'stripes':
        for y in range(0, h, 2 * s): d.rectangle([0, y, w, y + s - 1], fill=o)
    elif p == 'dots':
        for y in range(s // 2, h, s):
            for x in range(s // 2 + (y // s % 2) * s // 2, w, s): d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=o)
    elif p == 'check':
        for y in range(0, h, s):
            for x in range((y // s % 2) * s, w, 2 * s): d.rectangle([x, y, x + s - 1, y + s - 1], fill=o)
    elif p == 'two-tone': d.rectangle([0, 0, w // 2, h], fill=o)
    elif p == 'pleats':
        dark = tuple(int(c * 0.75) for c in m['colour'])
        for y in range(h // 4, h, max(6, h // 5)): d.line([0, y, w, y], fill=dark, width=2)
    elif p == 'speckle':
        a = np.asarray(im, dtype=np.int16) + rng.integers(-40, 41, (h, w, 1), dtype=np.int16)
        im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return im


def draw_mask(im: Image.Image, lm: np.ndarray, m: dict, state: str, rng: np.random.Generator) -> Image.Image:
    "Paint one mask on a portrait: patterned, shaded by the face's own light, with ear loops."
    poly = mask_polygon(lm, m['shape'], state)
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    x0, y0 = max(0, int(min(xs)) - 2), max(0, int(min(ys)) - 2)
    x1, y1 = min(im.width, int(max(xs)) + 3), min(im.height, int(max(ys)) + 3)
    if x1 - x0 < 4 or y1 - y0 < 4: return im
    alpha = Image.new('L', (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(alpha).polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    alpha = alpha.filter(ImageFilter.GaussianBlur(0.8))
    patch = np.asarray(_pattern((x1 - x0, y1 - y0), m, rng), dtype=np.float32)
    under = np.asarray(im.crop((x0, y0, x1, y1)).convert('L'), dtype=np.float32)
    light = 0.55 + 0.45 * under / max(float(np.percentile(under, 90)), 1.0)
    ramp = np.linspace(1.04, 0.9, y1 - y0, dtype=np.float32)[:, None]
    patch = Image.fromarray(np.clip(patch * (light * ramp)[..., None], 0, 255).astype(np.uint8))
    im = im.copy()
    im.paste(patch, (x0, y0), alpha)
    e, ex, ey, d, vn, vm = _frame(lm)
    loop = tuple(int(c * 0.8) for c in m['colour']) if m['pattern'] != 'plain' else (235, 235, 235)
    dr = ImageDraw.Draw(im)
    for side, ends in ((-1, (0, -1)), (1, (10, 11))):  # top corner and side point of each half
        ear = e + d * (side * 1.12 * ex + 0.35 * ey)
        for k in ends: dr.line([tuple(poly[k]), tuple(ear)], fill=loop, width=max(2, int(d / 40)))
    return im


def _affine(scale: float, shift: np.ndarray) -> tuple:
    "PIL inverse-affine coefficients for `canvas = scale * src + shift`."
    return (1 / scale, 0, -shift[0] / scale, 0, 1 / scale, -shift[1] / scale)


def check_framing(framing: str) -> str:
    "`framing` if it is one of `FRAMINGS`, else a ValueError naming them."
    if framing not in FRAMINGS: raise ValueError(f"unknown framing '{framing}' (one of {', '.join(FRAMINGS)})")
    return framing


def face_alpha(size: tuple[int, int], lm: np.ndarray, framing: str = 'source') -> Image.Image:
    "The part of a `size` source image a portrait shows (`FRAMINGS`): an oval in the face's frame, inside the image."
    e, ex, ey, d, _, _ = _frame(lm)
    cy, kx, ky = FRAMINGS[check_framing(framing)]
    w, h = size
    a = Image.new('L', (w, h), 0)
    if framing == 'source':   # axis-aligned, as the builder has always drawn it (the same pixels for the same faces)
        c = e + d * (cy * ey)
        ImageDraw.Draw(a).ellipse([c[0] - kx * d, c[1] - ky * d, c[0] + kx * d, c[1] + ky * d], fill=255)
    else:                     # turned with the face
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = e + d * (np.outer(kx * np.cos(t), ex) + np.outer(cy + ky * np.sin(t), ey))
        ImageDraw.Draw(a).polygon([tuple(p) for p in pts], fill=255)
    edge = Image.new('L', (w, h), 0)
    ImageDraw.Draw(edge).rectangle([3, 3, w - 4, h - 4], fill=255)
    return Image.fromarray(np.minimum(np.asarray(a), np.asarray(edge))).filter(ImageFilter.GaussianBlur(max(2, d / 12)))


def render_person(src: Image.Image, lm: np.ndarray, rng: np.random.Generator,
                  framing: str = 'source') -> dict[str, Image.Image]:
    "The seven 384x512 photos (mask1..5, incorrect_mask, normal) of one source face with landmarks `lm`."
    src = src.convert('RGB')
    e, ex, ey, d, vn, vm = _frame(lm)
    scale = rng.uniform(74, 90) / d
    anchor = np.array([WIDTH / 2 + rng.uniform(-8, 8), rng.uniform(190, 215)])
    bgc = np.array(rng.integers(30, 230, 3), dtype=np.float32)
    small = np.asarray(ImageOps.fit(src, (6, 8)).resize((WIDTH // 8, HEIGHT // 8), Image.BILINEAR), dtype=np.float32)
    bg = Image.fromarray(np.clip(0.5 * small + 0.5 * bgc, 0, 255).astype(np.uint8)).resize((WIDTH, HEIGHT), Image.BILINEAR)
    shirt = tuple(int(c) for c in rng.integers(15, 240, 3))
    nx, ny = (int(v) for v in np.clip(lm[2], 3, np.array(src.size) - 4))
    neck = tuple(int(v * 0.85) for v in np.median(np.asarray(src.crop((nx - 3, ny - 3, nx + 4, ny + 4))).reshape(-1, 3), 0))
    a = face_alpha(src.size, lm, framing)
    masks = person_masks(rng)
    wrong = 'below_nose' if rng.random() < 0.6 else 'chin'
    photos = {}
    for k, stem in enumerate(PHOTO_STEMS):
        s = scale * rng.uniform(0.97, 1.03)
        shift = anchor + rng.uniform(-4, 4, 2) - s * e
        coeffs = _affine(s, shift)
        face = src.transform((WIDTH, HEIGHT), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        alpha = a.transform((WIDTH, HEIGHT), Image.AFFINE, coeffs, resample=Image.BILINEAR)
        im = bg.copy()
        chin, sd = s * (e + d * (vm + 0.62) * ey) + shift, s * d
        dr = ImageDraw.Draw(im)
        dr.rectangle([chin[0] - 0.55 * sd, chin[1] - 0.8 * sd, chin[0] + 0.55 * sd, chin[1] + 0.9 * sd], fill=neck)
        dr.ellipse([chin[0] - 2.6 * sd, chin[1] + 0.6 * sd, chin[0] + 2.6 * sd, chin[1] + 4.5 * sd], fill=shirt)
        im.paste(face, (0, 0), alpha)
        lm_c = lm * s + shift
        if stem != 'normal': im = draw_mask(im, lm_c, masks[min(k, 5)], 'wear' if k < 5 else wrong, rng)
        f = rng.uniform(0.94, 1.06)
        photos[stem] = im.point([min(255, int(v * f)) for v in range(256)] * 3)
    return photos


# ---------------------------------------------------------------- the layout

def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format='JPEG', quality=90)
    return buf.getvalue()


def _build(root: Path, chosen: list[Face], persons: int, seed: int, detector: LandmarkDetector,
           progress: Callable | None, framing: str = 'source', chunk: int = 16) -> int:
    "Write the layout into `root`; return the number of template fallbacks."
    (root / 'train' / 'images').mkdir(parents=True)
    if len(chosen) > persons: (root / 'eval' / 'images').mkdir(parents=True)
    train_rows, eval_rows, sources, fallbacks = [], [], [], 0
    for c0 in range(0, len(chosen), chunk):
        batch = chosen[c0:c0 + chunk]
        ims = []
        for f in batch:
            with Image.open(f.path) as im: ims.append(ImageOps.exif_transpose(im).convert('RGB'))
        for j, (f, im, (lm, fell)) in enumerate(zip(batch, ims, detector(ims))):
            i = c0 + j
            fallbacks += fell
            photos = render_person(im, lm, np.random.default_rng([seed, i, 7]), framing)
            pid, race = f'{i + 1:06d}', f.race.replace('_', ' ')
            if i < persons:
                folder = labels.person_folder_name(pid, f.gender, race, f.age)
                (root / 'train' / 'images' / folder).mkdir()
                for stem, p in photos.items(): (root / 'train' / 'images' / folder / f'{stem}.jpg').write_bytes(_jpeg(p))
                train_rows.append([pid, labels.GENDERS[f.gender], race, f.age, folder])
            else:
                for stem, p in photos.items():
                    iid = eval_image_id(seed, pid, stem)
                    (root / 'eval' / 'images' / iid).write_bytes(_jpeg(p))
                    eval_rows.append([iid, labels.encode(labels.mask_from_stem(stem), f.gender, labels.age_group(f.age))])
            sources.append([pid, 'train' if i < persons else 'eval', str(f.path), int(fell)])
            if progress: progress(i + 1, len(chosen))
    write_layout_tables(root, train_rows, eval_rows, seed)
    write_rows(root / 'proxy_sources.csv', ['id', 'split', 'source', 'template_landmarks'], sources)
    return fallbacks


def make_proxy(faces, out, fmt: str = 'auto', persons: int = 1000, eval_persons: int = 200, seed: int = 0,
               detector: str = 'auto', progress: Callable[[int, int], None] | None = None,
               ages: tuple[int, int] | None = ADULTS, balance: bool = False, framing: str = 'source') -> dict:
    """Build a practice data set in the competition layout from real labelled faces; return its summary (proxy.json).

    `faces`: one source (a UTKFace-style folder, or a labels CSV/JSON: path, gender, age) or a list of sources,
    each a path or a (path, format) pair; `fmt` is the format of sources given without one. Several sources make one
    practice set: faces drawn from all of them (in proportion to their sizes, or as evenly as they allow with
    `balance`); `proxy.json` records each source and how many people it gave to each side (`mix`).
    `ages`: the faces used (default adults, 18 and over, as the competition's people: UTKFace is 40% children, whom
    no competition photo shows; its >= 60 faces stay, so the rare '>= 60' group has examples to learn from);
    None uses every face. `framing`: how much of each face the portraits show (`FRAMINGS`): 'source' (default), a
    wide oval cut by each source's crop, or 'face', the same face oval from every source."""
    out = Path(out)
    if persons < 2 or eval_persons < 0 or seed < 0: raise ValueError('need persons >= 2, eval_persons >= 0, seed >= 0')
    check_framing(framing)
    if nonempty(out): raise FileExistsError(f"proxy folder '{out}' already exists and is not empty")
    t0 = time.time()
    items = faces if isinstance(faces, (list, tuple)) else [faces]
    sources = [tuple(x) if isinstance(x, (list, tuple)) else (x, fmt) for x in items]
    pool, info = pooled_faces(sources, ages)
    n = persons + eval_persons
    if len(pool) < n:
        names = ', '.join(str(f) for f, _ in sources)
        raise LayoutError(f'{names}: {len(pool)} usable faces ({sum(sum(i["skipped"].values()) for i in info)} skipped), '
                          f'{n} needed ({persons} persons + {eval_persons} eval persons)')
    drawn = draw_mix(pool, len(sources), n, seed, balance)
    chosen = [f for _, f in drawn]
    for k, i in enumerate(info):
        i.update(persons=sum(1 for j, (s, _) in enumerate(drawn) if s == k and j < persons),
                 eval_persons=sum(1 for j, (s, _) in enumerate(drawn) if s == k and j >= persons))
    det = LandmarkDetector(detector)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out, 'proxy folder') as tmp:
        fallbacks = _build(tmp, chosen, persons, seed, det, progress, framing)
        skipped = sum((Counter(i['skipped']) for i in info), Counter())
        summary = dict(source=info[0]['source'] if len(info) == 1 else [i['source'] for i in info],
                       format=info[0]['format'] if len(info) == 1 else [i['format'] for i in info],
                       persons=persons, eval_persons=eval_persons, seed=seed, balance=balance, framing=framing, mix=info,
                       usable_faces=len(pool), outside_ages=sum(i['outside_ages'] for i in info), ages=ages,
                       skipped=dict(skipped), skipped_total=sum(skipped.values()), detector=det.name,
                       template_fallbacks=int(fallbacks), wall_time_s=round(time.time() - t0, 1))
        write_json(tmp / 'proxy.json', summary)
    return summary
