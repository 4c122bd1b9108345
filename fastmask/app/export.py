"""`fastmask app RUN_DIR --export DIR`: a self-contained folder that serves the run's page with onnxruntime and Gradio
alone — no torch, no fastai — ready to push to a Hugging Face Space (sdk: gradio) or to run on any server.

DIR holds `app.py` (this package's `space_app.py`), `portable.py` and `render.py` (copied verbatim: the same upload
checks, preprocessing and result HTML as `fastmask app`), the run's models as one 18-class ONNX model (the existing
`tools.export.export_onnx`, checked against PyTorch on the validation images) with its `.json`, `space.json` (the
page's title and notes), `requirements.txt` and a README whose front matter is a Space's configuration. The folder
is written atomically; an existing non-empty DIR is refused.
"""
from __future__ import annotations

import json
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastmask.io import atomic_dir, read_json, write_json, write_text
from fastmask.rundir import RunDir
from fastmask.tools.export import ExportError, export_onnx

from fastmask.app.about import scores, title
from fastmask.app.faces import facecrop_settings

__all__ = ['COPIED', 'REQUIREMENTS', 'export_space', 'space_readme']

HERE = Path(__file__).resolve().parent
#: files of this package copied into the export: source -> name there
COPIED = {'space_app.py': 'app.py', 'portable.py': 'portable.py', 'render.py': 'render.py'}
REQUIREMENTS = ('onnxruntime>=1.17', 'gradio>=6,<7', 'numpy>=1.24', 'pillow>=10')
TESTED_GRADIO = '6.31.0'    # the Space's sdk_version when Gradio is not installed here


def _gradio_version() -> str:
    try: return version('gradio')
    except PackageNotFoundError: return TESTED_GRADIO


def space_readme(info: dict, onnx_meta: dict) -> str:
    "The exported folder's README: a Space's front matter, what it is, how to run and deploy it."
    name = info['title']
    sc = ''.join(f'| {k} | {v} |\n' for k, v in info.get('scores', {}).items())
    return f"""---
title: {name.replace(':', ' ')}
emoji: 😷
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {_gradio_version()}
app_file: app.py
pinned: false
---

# {name}

{info['about']}

The model: `model.onnx` (input {onnx_meta['size']}x{onnx_meta['size']}, 18-class probabilities; the largest difference from
PyTorch on {onnx_meta.get('checked_images', 0)} validation images was {onnx_meta.get('max_abs_diff', float('nan')):.1e}).
Preprocessing (`portable.py`): EXIF-upright RGB, centre crop {onnx_meta['crop']:.4f} of the width, bilinear resize,
normalisation by the run's statistics — as `fastmask predict` does. The answer is the whole photo's (no face detector:
upload a face or a portrait).

Run it (onnxruntime, Gradio, numpy and pillow; no torch):

    pip install -r requirements.txt
    python app.py                      # http://127.0.0.1:7860
    python app.py --predict photo.jpg  # JSON lines, no server

Deploy it as a Hugging Face Space: create a Space with the Gradio SDK, then push this folder (`model.onnx` with
Git LFS, or `huggingface-cli upload USER/SPACE .`). On any server: `python app.py --host 0.0.0.0 --port 7860`.

| score | value |
|---|---|
{sc}
Exported by `fastmask app {info['run']} --export DIR`.
"""


def export_space(run_dir, out, opset: int = 17, num_workers: int | None = None) -> Path:
    "Write the self-contained Space folder of a finished run into `out` (absent or empty); return it."
    run_dir = Path(run_dir)
    if not run_dir.is_dir(): raise ExportError(f'{run_dir}: run folder does not exist')
    rd = RunDir(run_dir)
    summary = read_json(rd.summary) if rd.summary.is_file() else {}
    crops = facecrop_settings(run_dir)
    about = (f"An 18-class mask / gender / age model from the run `{title(run_dir)}` (kind `{rd.kind}`), "
             'exported by fastmask: upload a photo or use the webcam.')
    if crops: about += (f" The run was trained on face crops ({', '.join(crops['detectors'])}, margin {crops['margin']:g}): "
                        'this page has no face detector, so upload a face crop.')
    info = dict(title=f'fastmask: {title(run_dir)}', about=about, run=str(run_dir),
                scores={k: v for k, v in scores(summary).items() if k.startswith(('valid_f1', 'eval_f1', 'oof_f1'))})
    out = Path(out)
    with atomic_dir(out, 'export folder') as tmp:
        onnx = export_onnx(run_dir, tmp / RunDir.ONNX, opset=opset, num_workers=num_workers)
        for src, dst in COPIED.items(): shutil.copyfile(HERE / src, tmp / dst)
        write_text(tmp / 'requirements.txt', '\n'.join(REQUIREMENTS) + '\n')
        write_json(tmp / 'space.json', info)
        write_text(tmp / 'README.md', space_readme(info, json.loads(onnx.with_name(onnx.name + '.json').read_text())))
    return out
