"""Procedural demo data set in the competition layout: cartoon portraits with learnable mask, gender and age cues."""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fastmask import labels
from fastmask.io import atomic_dir, cache_root, nonempty

__all__ = ['PHOTO_STEMS', 'WIDTH', 'HEIGHT', 'demo_dir', 'make_demo', 'person_attrs', 'draw_person_photos',
           'eval_image_id', 'write_layout_tables', 'write_rows']

PHOTO_STEMS = ('mask1', 'mask2', 'mask3', 'mask4', 'mask5', 'incorrect_mask', 'normal')
WIDTH, HEIGHT = 384, 512
RACE = 'Asian'
_PALETTE = [(220, 30, 40), (30, 90, 220), (20, 170, 60), (250, 200, 0), (150, 40, 200), (250, 120, 0),
            (0, 190, 200), (240, 60, 170), (245, 245, 245), (25, 25, 30), (120, 200, 20), (0, 60, 120)]
_PATTERNS = ('plain', 'stripes', 'dots', 'two-tone')


def person_attrs(seed: int, index: int) -> tuple[int, int]:
    "(gender, age) of person `index` for `seed`: gender 50/50; ages 45% 18-29, 40% 30-56, 15% 57-60 (60% of them exactly 60)."
    rng = np.random.default_rng([seed, index, 1])
    gender, u = int(rng.integers(2)), rng.random()
    if u < 0.45: age = int(rng.integers(18, 30))
    elif u < 0.85: age = int(rng.integers(30, 57))
    else: age = 60 if rng.random() < 0.6 else int(rng.integers(57, 60))
    return gender, age


def _mix(a, b, t: float) -> tuple:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _mask_layer(rng, w: int, h: int, colour, shape: str, pattern: str) -> tuple[Image.Image, Image.Image]:
    "One mask: a patterned RGB patch and its alpha shape, `w` x `h` px."
    other = _PALETTE[int(rng.integers(len(_PALETTE)))]
    if other == colour: other = (255 - colour[0], 255 - colour[1], 255 - colour[2])
    patch = Image.new('RGB', (w, h), colour)
    d = ImageDraw.Draw(patch)
    if pattern == 'stripes':
        step = int(rng.integers(14, 22))
        for y in range(step // 2, h, step): d.rectangle([0, y, w, y + step // 2 - 1], fill=other)
    elif pattern == 'dots':
        step, r = int(rng.integers(18, 26)), int(rng.integers(4, 7))
        for y in range(step // 2, h, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, w, step): d.ellipse([x - r, y - r, x + r, y + r], fill=other)
    elif pattern == 'two-tone':
        if rng.random() < 0.5: d.rectangle([0, 0, w // 2, h], fill=other)
        else: d.rectangle([0, h // 2, w, h], fill=other)
    alpha = Image.new('L', (w, h), 0)
    a = ImageDraw.Draw(alpha)
    if shape == 'rounded':
        a.ellipse([0, -h, w - 1, h - 1], fill=255)
    else:
        a.rounded_rectangle([0, 0, w - 1, h - 1], radius=max(4, min(w, h) // 4), fill=255)
    return patch, alpha


def draw_person_photos(rng: np.random.Generator, gender: int, age: int) -> dict[str, Image.Image]:
    "The seven photos (mask1..mask5, incorrect_mask, normal) of one person as 384x512 RGB images."
    bg = tuple(int(v) for v in rng.integers(40, 235, 3))
    bg2 = _mix(bg, tuple(int(v) for v in rng.integers(40, 235, 3)), 0.4)
    skin = _mix((245, 215, 190), (150, 100, 70), rng.random())
    shirt = tuple(int(v) for v in rng.integers(20, 236, 3))
    grey = float(np.clip((age - 18) / 42 + rng.normal(0, 0.05), 0, 1))
    dark = [(35, 25, 20), (60, 40, 25), (20, 20, 22), (85, 55, 30)][int(rng.integers(4))]
    hair = _mix(dark, (232, 232, 228), grey)
    lips = _mix((200, 30, 60), (215, 40, 90), rng.random()) if gender else _mix(skin, (110, 50, 40), 0.35)
    n_wrinkles = 0 if age < 45 else (2 if age < 57 else 4)
    s = rng.uniform(0.9, 1.1)
    cx0, cy0 = WIDTH // 2 + rng.integers(-10, 11), 220 + rng.integers(-10, 11)
    light, tint, side = rng.uniform(0.75, 1.15), rng.uniform(0.92, 1.08, 3), rng.uniform(-0.15, 0.15)
    masks = [(_PALETTE[c], sh, pt) for c, sh, pt in zip(rng.permutation(len(_PALETTE))[:5],
                                                          rng.choice(['rounded', 'rect'], 5), rng.choice(_PATTERNS, 5))]
    masks.append((_PALETTE[int(rng.integers(len(_PALETTE)))], str(rng.choice(['rounded', 'rect'])), str(rng.choice(_PATTERNS))))
    incorrect_chin_only = rng.random() < 0.3
    yy = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]
    xx = np.linspace(-1, 1, WIDTH, dtype=np.float32)[None, :, None]
    shade = light * tint[None, None, :] * (1 + side * xx) * (1.05 - 0.1 * yy)
    photos = {}
    for k, stem in enumerate(PHOTO_STEMS):
        cx, cy = int(cx0 + rng.integers(-3, 4)), int(cy0 + rng.integers(-3, 4))
        rx, ry = int(85 * s), int(110 * s)
        im = Image.new('RGB', (WIDTH, HEIGHT), bg)
        d = ImageDraw.Draw(im)
        d.rectangle([0, HEIGHT // 2, WIDTH, HEIGHT], fill=bg2)
        if gender:  # long hair behind the head, falling to the shoulders
            d.ellipse([cx - rx - 40, cy - ry - 30, cx + rx + 40, cy + ry - 10], fill=hair)
            d.rectangle([cx - rx - 40, cy - 20, cx + rx + 40, cy + ry + 95], fill=hair)
        else:  # visible ears
            for ex in (cx - rx, cx + rx): d.ellipse([ex - 16, cy - 35, ex + 16, cy + 15], fill=_mix(skin, (90, 40, 30), 0.15))
        d.rectangle([cx - 30, cy + ry - 20, cx + 30, cy + ry + 50], fill=_mix(skin, (0, 0, 0), 0.12))  # neck
        d.ellipse([cx - 2 * rx, cy + ry + 35, cx + 2 * rx, cy + ry + 35 + 4 * ry], fill=shirt)  # shoulders
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
        top_hair = cy - ry - (8 if gender else 16)
        d.chord([cx - rx - 5, top_hair, cx + rx + 5, cy - 72 + (cy - 72 - top_hair)], 180, 360, fill=hair)
        for i in range(n_wrinkles):
            y = cy - 62 + 9 * i
            d.arc([cx - 45, y, cx + 45, y + 14], 200, 340, fill=_mix(skin, (60, 30, 20), 0.6), width=3)
        for ex in (cx - 35, cx + 35):  # eyes and brows
            d.ellipse([ex - 15, cy - 30, ex + 15, cy - 16], fill=(250, 250, 250))
            d.ellipse([ex - 6, cy - 29, ex + 6, cy - 17], fill=(40, 30, 25))
            d.line([ex - 16, cy - 40, ex + 16, cy - 40], fill=_mix(hair, (0, 0, 0), 0.3), width=4)
        nose = _mix(skin, (50, 20, 15), 0.7)
        d.polygon([(cx, cy - 14), (cx - 22, cy + 32), (cx + 22, cy + 32)], fill=_mix(skin, (90, 40, 30), 0.4), outline=nose, width=5)
        for nx in (cx - 9, cx + 9): d.ellipse([nx - 5, cy + 22, nx + 5, cy + 30], fill=(50, 25, 20))
        d.ellipse([cx - 32, cy + 48, cx + 32, cy + 72], fill=lips)
        d.line([cx - 30, cy + 60, cx + 30, cy + 60], fill=(70, 20, 20), width=3)
        if stem != 'normal':
            colour, shape, pattern = masks[k if k < 5 else 5]
            top = cy - 10 if k < 5 else (cy + 80 if incorrect_chin_only else cy + 38)
            bottom = cy + ry + 18
            x0, x1 = cx - rx - 6, cx + rx + 6
            patch, alpha = _mask_layer(rng, x1 - x0, bottom - top, colour, shape, pattern)
            im.paste(patch, (x0, top), alpha)
            d.line([x0, top + 8, cx - rx - 2, cy - 18], fill=colour, width=4)  # ear loops
            d.line([x1, top + 8, cx + rx + 2, cy - 18], fill=colour, width=4)
        a = np.asarray(im, dtype=np.float32) * shade * rng.uniform(0.97, 1.03)
        photos[stem] = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return photos


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format='JPEG', quality=90)
    return buf.getvalue()


def _render(job: tuple[int, int]) -> tuple[int, int, dict[str, bytes]]:
    "Worker: (seed, index) -> (gender, age, {stem: jpeg bytes})."
    seed, index = job
    gender, age = person_attrs(seed, index)
    photos = draw_person_photos(np.random.default_rng([seed, index, 2]), gender, age)
    return gender, age, {k: _jpeg(v) for k, v in photos.items()}


def write_rows(path: Path, header: list[str], rows) -> None:
    "Write a CSV with a header row."
    with open(path, 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(header)
        w.writerows(rows)


def eval_image_id(seed: int, pid: str, stem: str) -> str:
    "The eval ImageID of one photo: a hash that hides the person and the mask state."
    return hashlib.sha1(f'{seed}/{pid}/{stem}'.encode()).hexdigest() + '.jpg'


def write_layout_tables(root: Path, train_rows, eval_rows, seed: int) -> None:
    "train.csv, and eval/info.csv + eval/truth.csv in one seeded shuffled order (rows: [ImageID, class])."
    write_rows(root / 'train' / 'train.csv', ['id', 'gender', 'race', 'age', 'path'], train_rows)
    if eval_rows:
        order = np.random.default_rng([seed, 0, 3]).permutation(len(eval_rows))
        eval_rows = [eval_rows[j] for j in order]
        write_rows(root / 'eval' / 'info.csv', ['ImageID', 'ans'], [[r[0], 0] for r in eval_rows])
        write_rows(root / 'eval' / 'truth.csv', ['ImageID', 'ans'], eval_rows)


def _generate(root: Path, persons: int, eval_persons: int, seed: int) -> None:
    results = map(_render, [(seed, i) for i in range(persons + eval_persons)])  # serial: ~20 ms a person
    train_rows, eval_rows = [], []
    (root / 'train' / 'images').mkdir(parents=True)
    if eval_persons: (root / 'eval' / 'images').mkdir(parents=True)
    for i, (gender, age, photos) in enumerate(results):
        pid = f'{i + 1:06d}'
        if i < persons:
            folder = labels.person_folder_name(pid, gender, RACE, age)
            (root / 'train' / 'images' / folder).mkdir()
            for stem, data in photos.items(): (root / 'train' / 'images' / folder / f'{stem}.jpg').write_bytes(data)
            train_rows.append([pid, labels.GENDERS[gender], RACE, age, folder])
        else:
            for stem, data in photos.items():
                iid = eval_image_id(seed, pid, stem)
                (root / 'eval' / 'images' / iid).write_bytes(data)
                cls = labels.encode(labels.mask_from_stem(stem), gender, labels.age_group(age, labels.DEFAULT_AGE_CUT))
                eval_rows.append([iid, cls])
    write_layout_tables(root, train_rows, eval_rows, seed)


def make_demo(out, persons: int = 300, eval_persons: int = 60, seed: int = 0) -> Path:
    "Write the demo data set (train + eval with truth.csv) to `out` atomically; refuse a non-empty `out`."
    out = Path(out)
    if not isinstance(persons, (int, np.integer)) or persons < 4: raise ValueError(f'persons must be an integer >= 4, got {persons!r}')
    if not isinstance(eval_persons, (int, np.integer)) or eval_persons < 0:
        raise ValueError(f'eval_persons must be an integer >= 0, got {eval_persons!r}')
    if not isinstance(seed, (int, np.integer)) or seed < 0: raise ValueError(f'seed must be an integer >= 0, got {seed!r}')
    with atomic_dir(out, 'demo folder') as tmp: _generate(tmp, int(persons), int(eval_persons), int(seed))
    return out


def demo_dir(persons: int = 300, eval_persons: int = 60, seed: int = 0) -> Path:
    "The cached demo data set under `cache_root()`, generated on first use."
    out = cache_root() / f'demo-p{persons}-e{eval_persons}-s{seed}'
    if nonempty(out): return out
    try: return make_demo(out, persons, eval_persons, seed)
    except FileExistsError:
        if nonempty(out): return out  # another process won the race
        raise
