"""How an answer looks on the page: each face's label and probability bars as HTML, numbered boxes on the photo.

Shared by the app and its exported Space (copied beside the exported `app.py`, so it imports only `portable`). The
HTML carries the numbers twice: as text (percentages, what a person reads) and as `data-` attributes with every
digit (what the browser test reads off the page to compare with `fastmask predict`).
"""
from __future__ import annotations

import html

from PIL import Image, ImageDraw, ImageFont

try: from .portable import task_names
except ImportError: from portable import task_names   # beside the exported app.py

__all__ = ['CSS', 'COLOURS', 'faces_html', 'message_html', 'boxed']

COLOURS = ('#e4572e', '#17bebb', '#ffc914', '#76b041', '#2e86ab', '#a23b72', '#f18f01', '#c5d86d')
CSS = """
.fm-faces {display: flex; flex-wrap: wrap; gap: 12px;}
.fm-face {border: 1px solid #ddd; border-radius: 8px; padding: 8px 10px; min-width: 240px; flex: 1;}
.fm-head {font-size: 1.05em; margin-bottom: 6px;}
.fm-num {display: inline-block; min-width: 1.4em; text-align: center; color: #fff; border-radius: 4px; font-weight: bold;}
.fm-method {color: #777; font-size: .85em;}
.fm-tasks {display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 4px 14px;}
.fm-tname {font-weight: bold; margin-top: 4px; font-size: .9em;}
.fm-row {display: flex; align-items: center; gap: 6px; font-size: .85em;}
.fm-cname {width: 5.5em;}
.fm-track {flex: 1; background: #eee; height: .8em; border-radius: 3px; overflow: hidden;}
.fm-fill {display: block; height: 100%; background: #4c72b0;}
.fm-top .fm-fill {background: #c44e52;}
.fm-pct {width: 3.8em; text-align: right; font-variant-numeric: tabular-nums;}
.fm-message {padding: 6px 10px; border-radius: 6px; background: #eef4fb;}
.fm-error {background: #fdecea; color: #a12622; font-weight: bold;}
#fm-overview td:first-child, #fm-overview th:first-child {white-space: nowrap;}
#fm-overview td, #fm-overview th {padding: 2px 8px;}
"""


def _pct(p: float) -> str: return f'{100 * p:.1f}%'


def _bars(task: str, probs: list[float]) -> str:
    top = max(range(len(probs)), key=probs.__getitem__)
    rows = ''.join(
        f'<div class="fm-row{" fm-top" if i == top else ""}" data-class="{html.escape(n)}" data-p="{p:.8f}">'
        f'<span class="fm-cname">{html.escape(n)}</span><span class="fm-track"><span class="fm-fill" '
        f'style="width:{100 * p:.1f}%"></span></span><span class="fm-pct">{_pct(p)}</span></div>'
        for i, (n, p) in enumerate(zip(task_names(task), probs)))
    return f'<div class="fm-task" data-task="{task}"><div class="fm-tname">{task}</div>{rows}</div>'


def faces_html(faces: list[dict]) -> str:
    "Every face's 18-class label with its probability and the mask / gender / age bars (from `face_result` dicts)."
    out = []
    for i, f in enumerate(faces):
        colour = COLOURS[i % len(COLOURS)]
        head = (f'<div class="fm-head"><span class="fm-num" style="background:{colour}">{i + 1}</span> '
                f'<b class="fm-label">{html.escape(f["label"])}</b> <span class="fm-p">{_pct(f["p"])}</span> '
                f'<span class="fm-method">{html.escape(f.get("method") or "")}</span></div>')
        bars = '<div class="fm-tasks">' + ''.join(_bars(t, v) for t, v in f['tasks'].items()) + '</div>'
        out.append(f'<div class="fm-face" data-face="{i + 1}" data-label="{html.escape(f["label"])}" '
                   f'data-cls="{"" if f.get("cls") is None else f["cls"]}" data-p="{f["p"]:.8f}">{head}{bars}</div>')
    return f'<div class="fm-faces">{"".join(out)}</div>'


def message_html(text: str, error: bool = False) -> str:
    "One line for the page: what was found and how (or, for an error, what is wrong with the upload)."
    line = ' '.join(str(text).split())
    return f'<div class="fm-message{" fm-error" if error else ""}" id="fm-message-text">{html.escape(line)}</div>'


def _font(size: int):
    try: return ImageFont.load_default(size=size)
    except TypeError: return ImageFont.load_default()   # Pillow < 10.1


def boxed(image: Image.Image, faces: list[dict], max_side: int = 1024) -> Image.Image:
    "A copy of the photo (at most `max_side` pixels a side) with each face's numbered box and label."
    im = image.convert('RGB')
    scale = min(1.0, max_side / max(im.size))
    if scale < 1: im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    draw, width = ImageDraw.Draw(im), max(2, round(max(im.size) / 250))
    font = _font(max(12, round(max(im.size) / 28)))
    for i, f in enumerate(faces):
        if not f.get('box'): continue
        colour = COLOURS[i % len(COLOURS)]
        x0, y0, x1, y1 = (v * scale for v in f['box'])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        text = f'{i + 1} {f["label"]}'
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        ty = y0 - (b - t) - 2 * width if y0 - (b - t) - 2 * width >= 0 else y0
        draw.rectangle((x0, ty, x0 + (r - l) + 2 * width, ty + (b - t) + 2 * width), fill=colour)
        draw.text((x0 + width - l, ty + width - t), text, fill='white', font=font)
    return im
