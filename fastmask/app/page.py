"""`fastmask app RUN_DIR`: the Gradio page of a run — "Try it", "Its mistakes", "The run" — and its server.

The models and the face detector are loaded once, before the page is served (`answer.Answerer`); the mistakes,
figures and curves are read from the run folder once too. The server binds 127.0.0.1 unless told otherwise. Every
element a test or a person reads has an `elem_id` (`fm-...`).
"""
from __future__ import annotations

import os
from pathlib import Path

from fastmask.errors import MissingExtraError
from fastmask.labels import task_names
from fastmask.rundir import RunDir

from fastmask.app import about
from fastmask.app.answer import Answerer
from fastmask.app.mistakes import ANY, caption, class_f1_image, confusion_image, ranked, thumbnail, validation
from fastmask.app.render import CSS, faces_html, message_html

__all__ = ['MODES', 'SHOWN', 'gradio', 'build', 'serve', 'HOST']

MODES = ('find faces', 'whole photo')
SHOWN = 24                 # mistakes shown as thumbnails (the table lists every one)
HOST = '127.0.0.1'
MAX_UPLOAD = '200mb'       # Gradio refuses larger uploads itself; below it, `portable.MAX_BYTES` says what is too big


def gradio():
    "The gradio module (one-line error when the `app` extra is missing); no analytics calls."
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    try: import gradio as gr
    except ImportError: raise MissingExtraError('gradio', 'app', 'fastmask app') from None
    return gr


def _try_tab(gr, answerer: Answerer):
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.File(label='Your photo (any image file)', file_count='single', type='filepath', elem_id='fm-photo')
            camera = gr.Image(label='...or the webcam', sources=['webcam'], type='filepath', elem_id='fm-camera')
            mode = gr.Radio(list(MODES), value=MODES[0], label=f'Faces: {answerer.finder.how}', elem_id='fm-mode')
        with gr.Column(scale=2):
            message = gr.HTML(message_html('Upload a photo or take one with the webcam.'), elem_id='fm-message',
                              js_on_load=None)
            shown = gr.Image(label='Faces found', type='pil', format='png', interactive=False, elem_id='fm-shown',
                             height=440)
            result = gr.HTML('', elem_id='fm-result', js_on_load=None)
            with gr.Accordion('The numbers', open=False):
                raw = gr.JSON(elem_id='fm-raw')
    last = gr.State(None)

    def answer(path, how):
        if not path: return None, '', message_html('Upload a photo or take one with the webcam.'), None, None
        a = answerer(path, whole=how == MODES[1])
        if a.error: return None, '', message_html(f'error: {a.error}', error=True), None, {'error': a.error}
        return a.image, faces_html(a.faces), message_html(a.message), path, {'faces': a.faces, 'message': a.message}

    def again(path, how):
        return answer(path, how) if path else (gr.skip(),) * 5

    outs = [shown, result, message, last, raw]
    photo.upload(answer, [photo, mode], outs, show_progress='minimal', api_name='answer')
    camera.input(answer, [camera, mode], outs, show_progress='minimal', api_name='answer_webcam')
    mode.change(again, [last, mode], outs, show_progress='minimal')


def _mistakes_tab(gr, run_dir):
    v = validation(run_dir)
    if v is None or not v.tasks:
        gr.Markdown(f'{RunDir(run_dir).path}: no validation predictions to rank (no {RunDir.VALID_PREDS} with '
                    f'probabilities, nor out-of-fold ones).', elem_id='fm-no-mistakes')
        return

    def rows(task, cls):
        df, n_wrong = ranked(v, task, cls), len(ranked(v, task))
        label = '18 classes' if task == 'all' else task
        what = f'; {len(df)} of them truly {cls}' if cls != ANY else ''
        head = (f'**{n_wrong}** of {len(v.rows)} validation images wrong on {label}{what}; highest loss first '
                f'(from `{v.source}`)')
        gallery = [(thumbnail(r.path), caption(r)) for r in df.head(SHOWN).itertuples(index=False)]
        table = df.assign(path=[f'{Path(p).parent.name}/{Path(p).name}' for p in df['path']]).rename(columns={'path': 'image'})
        return head, gallery, table

    def on_task(task):
        head, gallery, df = rows(task, ANY)
        return (gr.Dropdown(choices=[ANY, *task_names(task)], value=ANY), head, gallery, df,
                confusion_image(v, task), class_f1_image(v, task))

    def on_class(task, cls): return rows(task, cls)

    first = v.tasks[0]
    head, gallery, df = rows(first, ANY)
    with gr.Row():
        task = gr.Dropdown(v.tasks, value=first, label='Task', elem_id='fm-task')
        cls = gr.Dropdown([ANY, *task_names(first)], value=ANY, label='True class', elem_id='fm-class')
    info = gr.Markdown(head, elem_id='fm-mistakes-info')
    shown = gr.Gallery(gallery, label='Highest loss first (true -> predicted)', columns=6, height='auto',
                       elem_id='fm-gallery', interactive=False)
    table = gr.Dataframe(df, label='Every mistake', interactive=False, elem_id='fm-mistakes', max_height=360)
    with gr.Row():
        conf = gr.Image(confusion_image(v, first), label='Confusion matrix', type='pil', format='png',
                        interactive=False, elem_id='fm-confusion')
        f1 = gr.Image(class_f1_image(v, first), label='Per-class F1', type='pil', format='png', interactive=False,
                      elem_id='fm-class-f1')
    task.change(on_task, [task], [cls, info, shown, table, conf, f1])
    cls.input(on_class, [task, cls], [info, shown, table])


def _run_tab(gr, run_dir):
    rd, md = RunDir(run_dir), about.overview(run_dir)
    with gr.Column(elem_id='fm-overview'):
        gr.Markdown(md['head'])
        with gr.Row():
            gr.Markdown(md['recipe'], elem_id='fm-recipe')
            with gr.Column():
                gr.Markdown(md['scores'], elem_id='fm-scores')
                gr.Markdown(md['data'], elem_id='fm-data')
            gr.Markdown(md['settings'], elem_id='fm-settings')
    curves = about.curves(run_dir)
    for i in range(0, len(curves), 2):
        with gr.Row():
            for im, name in curves[i:i + 2]:
                gr.Image(im, label=f'{name}: loss and F1 per epoch', type='pil', format='png', interactive=False,
                         elem_classes=['fm-curve'])
    gr.Dataframe(about.metrics_table(run_dir), label='Every epoch', interactive=False, elem_id='fm-epochs', max_height=300)
    with gr.Accordion(RunDir.CONFIG, open=False):
        gr.JSON(rd.config_or_empty())
    if rd.summary.is_file():
        with gr.Accordion(RunDir.SUMMARY, open=False):
            gr.JSON(rd.read_summary())


def build(run_dir, mtcnn: bool = True, answerer: Answerer | None = None):
    "The page of a run folder (a `gradio.Blocks`); `answerer`: reuse one already loaded."
    answerer = answerer or Answerer(run_dir, mtcnn=mtcnn)    # a folder without models fails here, in one line
    gr = gradio()
    p = answerer.predictor
    with gr.Blocks(title=f'fastmask · {about.title(run_dir)}', analytics_enabled=False,
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown(f'## fastmask · {about.title(run_dir)}\n{p.n_models} model(s), kind `{RunDir(run_dir).kind}`, '
                    f"predicts {', '.join(p.tasks)}; input {p.meta.get('size', '?')} px", elem_id='fm-title')
        with gr.Tabs():
            with gr.Tab('Try it', id='try', elem_id='fm-tab-try'): _try_tab(gr, answerer)
            with gr.Tab('Its mistakes', id='mistakes', elem_id='fm-tab-mistakes'): _mistakes_tab(gr, run_dir)
            with gr.Tab('The run', id='run', elem_id='fm-tab-run'): _run_tab(gr, run_dir)
    return demo


def serve(run_dir, host: str = HOST, port: int | None = None, share: bool = False, block: bool = True,
          mtcnn: bool = True, quiet: bool = False):
    "Build the page and serve it (`block=False`: return the running `Blocks`; stop it with `.close()`)."
    demo = build(run_dir, mtcnn=mtcnn)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=quiet,
                show_error=False, ssr_mode=False, max_file_size=MAX_UPLOAD, css=CSS, footer_links=[])
    return demo
