"""`fastmask app RUN_DIR`: a web page for any finished run folder (Gradio, the `app` extra).

- "Try it": a photo or the webcam in; the faces found (`faces`), each answered by the run's models loaded once
  (`predictor`, the numbers of `fastmask predict`), drawn and listed with mask / gender / age bars (`render`);
  a bad upload is one line on the page (`portable.read_image`). `answer` does this without the page.
- "Its mistakes": validation images ranked by loss per task and class, confusion matrices, per-class F1 (`mistakes`).
- "The run": recipe, data, settings, scores and per-epoch curves (`about`).
- `fastmask app RUN_DIR --export DIR` (`export`): a folder that runs with onnxruntime and Gradio alone, for a Space.

`page.serve` builds and serves the page; `browser` drives it in headless Chromium (tests, screenshots). Nothing
here is imported by `import fastmask`; Gradio is imported only when a page is built.
"""
import importlib as _importlib

#: public name -> module that defines it (loaded on first use)
API = {'serve': 'fastmask.app.page', 'build': 'fastmask.app.page', 'Answerer': 'fastmask.app.answer',
       'Predictor': 'fastmask.app.predictor', 'export_space': 'fastmask.app.export'}
__all__ = sorted(API)


def __getattr__(name):
    if name in API: return getattr(_importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'fastmask.app' has no attribute '{name}'")
