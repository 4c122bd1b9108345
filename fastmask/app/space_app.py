"""A fastmask model as a web page: your photo or webcam in, mask / gender / age out (ONNX + Gradio, no torch).

Written by `fastmask app RUN_DIR --export DIR` as DIR/app.py, beside `portable.py`, `render.py`, the run's models
as one 18-class ONNX model (`model.onnx`, `model.onnx.json`: input size, crop, normalisation) and `space.json`.
It needs onnxruntime, Gradio, numpy and pillow only (requirements.txt): push the folder to a Hugging Face Space
(sdk: gradio) or run it on any server:

    pip install -r requirements.txt && python app.py [--host 127.0.0.1] [--port 7860]
    python app.py --predict photo.jpg ...     # the answers as JSON lines, no server

The photo is preprocessed as `fastmask predict` does (EXIF-upright RGB, centre crop, bilinear resize, the run's
normalisation) and the whole photo is answered (no face detector here: upload a face or a portrait). This file is
not imported by the fastmask package; it imports `portable` and `render` from its own folder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from portable import UploadError, face_result, model_input, read_image, split_probs   # noqa: E402
from render import CSS, boxed, faces_html, message_html                                # noqa: E402

MODEL, META, SPACE = HERE / 'model.onnx', HERE / 'model.onnx.json', HERE / 'space.json'
HELLO = 'Upload a photo or take one with the webcam.'


class Model:
    "The exported 18-class ONNX model on the CPU, and what it expects."
    def __init__(self, path: Path = MODEL):
        import onnxruntime as ort
        self.meta = json.loads(path.with_name(path.name + '.json').read_text())
        self.session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name

    def probs(self, images) -> np.ndarray:
        "18-class probabilities of RGB images, one row each."
        m = self.meta
        x = np.stack([model_input(im, int(m['size']), float(m['crop']), m.get('stats')) for im in images])
        return self.session.run(None, {self.input: x})[0]

    def answer(self, path, name: str | None = None) -> dict:
        "The answer for an image file: its one face (the whole photo), the boxed image, one line on how; or an error."
        try: image, notes = read_image(path, name)
        except UploadError as e: return dict(error=str(e))
        face = face_result(split_probs(self.probs([image])), 0, None, 'whole photo')
        return dict(faces=[face], image=boxed(image, [face]), message='; '.join(['the whole photo', *notes]))


def page(model: Model, info: dict):
    "The Gradio page: a photo or the webcam in, the label and probability bars out."
    import gradio as gr
    with gr.Blocks(title=info.get('title', 'fastmask'), analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## {info.get('title', 'fastmask')}\n{info.get('about', '')}", elem_id='fm-title')
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.File(label='Your photo (any image file)', file_count='single', type='filepath', elem_id='fm-photo')
                camera = gr.Image(label='...or the webcam', sources=['webcam'], type='filepath', elem_id='fm-camera')
            with gr.Column(scale=2):
                message = gr.HTML(message_html(HELLO), elem_id='fm-message', js_on_load=None)
                shown = gr.Image(label='Answered', type='pil', format='png', interactive=False, elem_id='fm-shown')
                result = gr.HTML('', elem_id='fm-result', js_on_load=None)
                with gr.Accordion('The numbers', open=False):
                    raw = gr.JSON(elem_id='fm-raw')

        def answer(path):
            if not path: return None, '', message_html(HELLO), None
            a = model.answer(path)
            if 'error' in a: return None, '', message_html(f"error: {a['error']}", error=True), {'error': a['error']}
            return a['image'], faces_html(a['faces']), message_html(a['message']), {'faces': a['faces']}

        outs = [shown, result, message, raw]
        photo.upload(answer, [photo], outs, api_name='answer')
        camera.input(answer, [camera], outs, api_name='answer_webcam')
    return demo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--host', default=os.environ.get('GRADIO_SERVER_NAME', '127.0.0.1'),
                    help='address to bind (default 127.0.0.1; a Space sets GRADIO_SERVER_NAME)')
    ap.add_argument('--port', type=int, default=int(os.environ.get('GRADIO_SERVER_PORT', 7860)))
    ap.add_argument('--predict', nargs='+', metavar='IMAGE', help='print the answers as JSON lines; no server')
    args = ap.parse_args(argv)
    model = Model()
    if args.predict:
        for p in args.predict:
            a = model.answer(p)
            print(json.dumps({'path': p, **{k: v for k, v in a.items() if k != 'image'}}))
        return
    info = json.loads(SPACE.read_text()) if SPACE.is_file() else {}
    page(model, info).queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port, show_error=False, ssr_mode=False, max_file_size='200mb',
        css=CSS, footer_links=[])


if __name__ == '__main__':
    main()
