"""GPU acceptance: every device-dependent path of fastmask, run as the command line runs it, in one table.

    benchmarks/gpu_check.sh [--cpu] [--jobs N] [--only NAME,...] [--size N] [--timeout S] [--workdir DIR] [--keep]
                            [--json FILE]
    python benchmarks/gpu_check.py ...            (the same, with this Python)

On a CUDA machine, no internet needed, in under 5 minutes: a small demo data set is made in a temporary folder and
each check runs real commands on it (`python -m fastmask ...` in a subprocess, random weights or the offline Lite0
weights). `--cpu` runs the same on the CPU (CUDA hidden with CUDA_VISIBLE_DEVICES=''), smaller (32 px instead of
64, 16 + 4 demo people instead of 48 + 12, SWA's mask model on mobilenetv2_100, `--compile` on timm's tiny
`test_efficientnet`: inductor needs minutes for mobilenetv2_100 on 2 cores), with the CUDA-only checks as SKIP. At the end one table: check, PASS / FAIL / SKIP, seconds, a note (the resolved precision,
the F1, or the error's last line); the exit status is 1 when any check failed. Each check's commands and output are
in `LOGS/<check>.log` (the folder is printed; kept when a check failed or with `--keep`).

Checks (independent ones run `--jobs` at a time; `gpu-bench` alone on a GPU, so its figures are clean):
  auto-precision   the precision `auto` picks here (`runtime.resolve_precision(Runtime(), device)`), with the GPU's
                   compute capability: bf16 on capability >= 8, fp16 below; fp32 on a CPU
  train            `fastmask recipe baseline_mobilenetv2 --quick --epochs 2 --size 64`: finished, at that precision
  resume           the same run SIGTERMed after its first epoch's checkpoint (exit 130, `fastmask resume` named),
                   then `fastmask resume RUN_DIR`: finished, every epoch logged, the checkpoint gone
  swa              `fastmask recipe swa_effnet_b3 --quick --epochs 2`: the averaged model's `swa` row in each log
  fp16             `--precision fp16` (autocast + GradScaler; CUDA only): finished, finite losses, fp16 recorded
  bf16             `--precision bf16`: finished, finite losses, bf16 recorded
  probe-frozen-bn  `fastmask recipe cpu_split_lite0 --quick --tasks gender` (offline Lite0 weights): the probe head,
                   then fine-tuning with frozen BatchNorm -- the body's running statistics equal the pretrained ones
  compile          `--compile`: training, validation and the eval-set prediction with torch.compile
  predict          `fastmask predict RUN_DIR` (train's run): one answer per eval image, as the run's submission.csv
  evaluate         `fastmask evaluate RUN_DIR`: scores.json with the F1s and the `precision` it predicted at
  export-onnx      `fastmask export RUN_DIR`: ONNX model checked against PyTorch by onnxruntime
  study-failure    `fastmask study 'baseline_mobilenetv2[drop_rate=2.0]' baseline_mobilenetv2` at bf16 (fp16 on an
                   older GPU): the first member fails inside its autocast forward, the second trains to the end with
                   autocast off when its fit starts and after the study (checked in the study's own process)
  gpu-bench        `benchmarks/gpu.py` in a small configuration: fit / model-step ceiling ratio per architecture
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PASS, FAIL, SKIP = 'PASS', 'FAIL', 'SKIP'
TABLE_HEADER = '== gpu_check results =='


class CheckFailed(Exception):
    "A check's failure, with the note that explains it."


@dataclass
class Check:
    name: str
    fn: Callable
    cuda_only: bool = False
    needs: tuple = ()
    exclusive_on_gpu: bool = False   # run alone on a GPU (timings)


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    note: str


_ERROR = re.compile(r'^(error: |[A-Za-z_][\w.]*(Error|Exception|Failed|Interrupted|Interrupt)\b:?)')


def last_line(text: str, width: int = 160) -> str:
    """The line of a command's output that says what went wrong: fastmask's one-line `error: ...`, else the last
    `SomeError: ...` line of a traceback, else the last line (warnings left out); shortened to `width`."""
    lines = [ln.strip() for ln in (text or '').splitlines() if ln.strip() and 'warn' not in ln.lower()]
    line = next((ln for ln in reversed(lines) if _ERROR.match(ln)), lines[-1] if lines else '')
    return line if len(line) <= width else line[:width - 3] + '...'


def _json_line(text: str, tag: str) -> dict:
    "The JSON object a probe printed after `tag`."
    for ln in reversed((text or '').splitlines()):
        if ln.startswith(tag + ' '): return json.loads(ln[len(tag) + 1:])
    raise CheckFailed(f'no {tag} line in the output: {last_line(text)}')


def _read_json(p: Path) -> dict:
    if not p.is_file(): raise CheckFailed(f'{p.name} missing in {p.parent}')
    return json.loads(p.read_text())


def _rows(p: Path) -> list[dict]:
    if not p.is_file(): raise CheckFailed(f'{p.name} missing in {p.parent}')
    with p.open(newline='') as f: return list(csv.DictReader(f))


def _finite(rows: list[dict], cols=('train_loss', 'valid_loss')) -> bool:
    vals = [r[c] for r in rows for c in cols if r.get(c) not in (None, '')]
    return bool(vals) and all(math.isfinite(float(v)) for v in vals)


def _f(v) -> str: return '-' if v is None else f'{v:.3f}'


class Ctx:
    "What every check shares: the mode, the sizes, the data, the folders, the environment, and how to run a command."
    def __init__(self, a, tmp: Path):
        self.a, self.cpu, self.tmp = a, a.cpu, tmp
        self.logs, self.runs = tmp / 'logs', tmp / 'runs'
        self.logs.mkdir(parents=True, exist_ok=True)
        self.py = sys.executable
        self.size = str(a.size or (32 if self.cpu else 64))
        self.persons, self.eval_persons = (16, 4) if self.cpu else (48, 12)
        self.timeout = a.timeout
        env = dict(os.environ, FASTMASK_CACHE=str(tmp / 'cache'), FASTMASK_PROGRESS='0', PYTHONWARNINGS='ignore',
                   HF_HUB_OFFLINE='1', PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
        if self.cpu:
            env['CUDA_VISIBLE_DEVICES'] = ''
            cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
            env.setdefault('OMP_NUM_THREADS', str(max(1, cores // max(1, a.jobs))))
            env.setdefault('TORCHINDUCTOR_COMPILE_THREADS', '1')   # no pool of compile workers on a small CPU
        self.env = env
        os.environ['FASTMASK_CACHE'] = env['FASTMASK_CACHE']   # this process reads the converted Lite0 weights there
        self.auto: dict = {}          # what auto-precision found
        self.train_run: Path | None = None
        self.data: Path | None = None
        self._lock = threading.Lock()

    # --- running commands ---------------------------------------------------------------------------------------
    def log(self, check: str, text: str) -> None:
        with self._lock, (self.logs / f'{check}.log').open('a') as f: f.write(text)

    def run(self, check: str, args: list, timeout: float | None = None) -> subprocess.CompletedProcess:
        "Run a command (in the temporary folder), log it, return it; a timeout is a failure."
        args = [str(x) for x in args]
        t = time.perf_counter()
        try: p = subprocess.run(args, capture_output=True, text=True, env=self.env, cwd=self.tmp, timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired as e:
            self.log(check, f'$ {subprocess.list2cmdline(args)}\n[timed out after {e.timeout:.0f} s]\n{e.stdout or ""}\n{e.stderr or ""}\n')
            raise CheckFailed(f'timed out after {e.timeout:.0f} s: {subprocess.list2cmdline(args[1:])[:100]}') from None
        self.log(check, f'$ {subprocess.list2cmdline(args)}\n[exit {p.returncode} after {time.perf_counter() - t:.1f} s]\n'
                        f'--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}\n')
        return p

    def fastmask(self, check: str, *args, timeout=None) -> subprocess.CompletedProcess:
        return self.run(check, [self.py, '-m', 'fastmask', *args], timeout)

    def python(self, check: str, code: str, *args, timeout=None) -> subprocess.CompletedProcess:
        return self.run(check, [self.py, '-c', code, *args], timeout)

    @staticmethod
    def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        if p.returncode != 0: raise CheckFailed(f'exit {p.returncode}: {last_line(p.stderr) or last_line(p.stdout)}')
        return p

    # --- the common shapes of a run -----------------------------------------------------------------------------
    def quick(self, recipe: str, out: Path, *extra, epochs: int = 2, pretrained: bool = False) -> list:
        "A `fastmask recipe` command line of a small quick run."
        return ['recipe', recipe, '--quick', '--epochs', str(epochs), '--size', self.size, '--data', self.data,
                '--out', out, *([] if pretrained else ['--no-pretrained']), *extra]

    @staticmethod
    def run_dir(out: Path, recipe: str) -> Path:
        "The one run folder of `recipe` under `out`."
        dirs = sorted(d for d in (out / recipe).glob('*') if d.is_dir()) if (out / recipe).is_dir() else []
        if len(dirs) != 1: raise CheckFailed(f'expected one run folder under {out / recipe}, found {len(dirs)}')
        return dirs[0]

    @staticmethod
    def finished(run: Path) -> dict:
        s = _read_json(run / 'summary.json')
        if s.get('status') != 'finished': raise CheckFailed(f"{run}: summary status {s.get('status')!r}")
        return s

    def expect_precision(self, s: dict, want: str, what: str = '') -> str:
        "The precision a summary's `speed` records for every task (and eval_speed), which must be `want`."
        speed = s.get('speed') or {}
        got = {t: v.get('precision') for t, v in speed.items()}
        if not got or set(got.values()) != {want}: raise CheckFailed(f'{what}trained at {got or "?"}, expected {want}')
        ev = (s.get('eval_speed') or {}).get('precision')
        if ev is not None and ev != want: raise CheckFailed(f'{what}predicted the eval set at {ev}, expected {want}')
        cl = all(v.get('channels_last') for v in speed.values())
        return want + (' + channels-last' if cl else '')


# --- the checks ---------------------------------------------------------------------------------------------------
AUTO_PROBE = r'''
import json, platform, torch
from fastmask.runtime import Runtime, cpu_flags, cuda_capability, resolve_precision, use_channels_last
cuda = torch.cuda.is_available()
dev = torch.device('cuda' if cuda else 'cpu')
name = ''
try:
    name = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.lower().startswith('model name')), '')
except OSError: pass
d = dict(cuda=cuda, device=str(dev), precision=resolve_precision(Runtime(), dev), channels_last=use_channels_last(Runtime(), dev),
         cpu=name or platform.processor(), flags=sorted(f for f in cpu_flags() if f in ('avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile')),
         torch=torch.__version__)
if cuda:
    d.update(gpu=torch.cuda.get_device_name(dev), capability=list(cuda_capability(dev)), gpus=torch.cuda.device_count())
print('AUTO ' + json.dumps(d))
'''


def check_auto(c: Ctx) -> str:
    d = _json_line(c.ok(c.python('auto-precision', AUTO_PROBE)).stdout, 'AUTO')
    c.auto = d
    if c.cpu:
        if d['cuda']: raise CheckFailed('CUDA is visible despite CUDA_VISIBLE_DEVICES=""')
        want_cl = 'avx512f' in d['flags']
        if d['precision'] != 'fp32' or d['channels_last'] != want_cl:
            raise CheckFailed(f"auto -> {d['precision']}, channels-last {d['channels_last']}; expected fp32, {want_cl}")
        return (f"CPU {d['cpu']} ({', '.join(d['flags']) or 'no avx512/amx'}): auto -> fp32, "
                f"channels-last {'on' if want_cl else 'off'}; torch {d['torch']}")
    if not d['cuda']: raise CheckFailed('no CUDA device visible (run with --cpu on a machine without a GPU)')
    cap = d['capability']
    want = 'bf16' if cap[0] >= 8 else 'fp16'
    if d['precision'] != want or not d['channels_last']:
        raise CheckFailed(f"capability {cap[0]}.{cap[1]}: auto -> {d['precision']}, channels-last {d['channels_last']}; expected {want}, True")
    return f"{d['gpu']} (compute capability {cap[0]}.{cap[1]}): auto -> {want} + channels-last; torch {d['torch']}"


def check_train(c: Ctx) -> str:
    out = c.runs / 'train'
    c.ok(c.fastmask('train', *c.quick('baseline_mobilenetv2', out)))
    run = c.run_dir(out, 'baseline_mobilenetv2')
    s = c.finished(run)
    prec = c.expect_precision(s, c.auto['precision'])
    if not (run / 'submission.csv').is_file(): raise CheckFailed('no submission.csv')
    c.train_run = run
    return f"valid F1 {_f(s.get('valid_f1'))}, eval F1 {_f(s.get('eval_f1'))}; {prec}"


def check_resume(c: Ctx) -> str:
    epochs = 3 if c.cpu else 6
    for attempt in range(2):                                   # a GPU may finish a fit before the signal lands
        out = c.runs / f'resume{attempt}'
        args = [c.py, '-m', 'fastmask', *c.quick('baseline_mobilenetv2', out, epochs=epochs)]
        c.log('resume', f'$ {subprocess.list2cmdline(map(str, args))}  (SIGTERM after the first checkpoint)\n')
        p = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=c.env, cwd=c.tmp)
        t0, sent, ck = time.time(), None, None
        try:
            while p.poll() is None and time.time() - t0 < c.timeout:
                ck = next(out.glob('baseline_mobilenetv2/*/checkpoint_all.pth'), None)
                if ck is not None:
                    p.send_signal(signal.SIGTERM)
                    sent = time.time() - t0
                    break
                time.sleep(0.02)
            if sent is None and p.poll() is None: p.kill()       # no checkpoint within the timeout
            stdout, stderr = p.communicate(timeout=c.timeout)
        finally:
            if p.poll() is None: p.kill(); p.communicate()
        c.log('resume', f'[exit {p.returncode}; SIGTERM sent after {sent} s]\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n')
        if sent is None:
            if p.returncode == 0 and attempt == 0: epochs *= 3; continue
            raise CheckFailed(f'the run ended (exit {p.returncode}) before its first checkpoint: {last_line(stderr)}')
        break
    if p.returncode != 130 or 'fastmask resume' not in stderr:
        raise CheckFailed(f'SIGTERM gave exit {p.returncode} (expected 130 and the resume command): {last_line(stderr)}')
    run = ck.parent
    if (run / 'summary.json').exists(): raise CheckFailed('the interrupted run wrote summary.json')
    done = len(_rows(run / 'metrics_all.csv'))
    r = c.fastmask('resume', 'resume', run)
    c.ok(r)
    s = c.finished(run)
    rows = _rows(run / 'metrics_all.csv')
    if (run / 'checkpoint_all.pth').exists(): raise CheckFailed('checkpoint_all.pth left behind after the resumed run')
    logged = (s.get('epochs') or {}).get('all')
    if len(rows) <= done or (logged is not None and logged != len(rows)):
        raise CheckFailed(f'{done} epochs logged at the SIGTERM, {len(rows)} after resuming (summary: {logged})')
    return (f'SIGTERM after epoch {done} of {epochs} (exit 130); resumed to {len(rows)} epochs, '
            f"valid F1 {_f(s.get('valid_f1'))}; {c.expect_precision(s, c.auto['precision'])}")


def check_swa(c: Ctx) -> str:
    out = c.runs / 'swa'
    extra = ['--tasks', 'mask', '--arch', 'mobilenetv2_100'] if c.cpu else []
    c.ok(c.fastmask('swa', *c.quick('swa_effnet_b3', out, *extra)))
    run = c.run_dir(out, 'swa_effnet_b3')
    s = c.finished(run)
    logs = sorted(run.glob('metrics_*.csv'))
    if not logs: raise CheckFailed('no metrics_<task>.csv')
    for p in logs:
        rows = _rows(p)
        if not rows or rows[-1].get('epoch') != 'swa': raise CheckFailed(f'{p.name}: no swa row at the end')
    tasks = [p.stem[len('metrics_'):] for p in logs]
    f1 = ', '.join(f"{t} {_f(s.get(f'valid_f1_{t}'))}" for t in tasks)
    arch = ' (mobilenetv2_100 on the CPU)' if c.cpu else ''
    return f"averaged model logged for {', '.join(tasks)}{arch}; valid F1 {f1}"


def _precision_run(c: Ctx, check: str, precision: str) -> str:
    out = c.runs / check
    c.ok(c.fastmask(check, *c.quick('baseline_mobilenetv2', out, '--precision', precision)))
    run = c.run_dir(out, 'baseline_mobilenetv2')
    s = c.finished(run)
    prec = c.expect_precision(s, precision)
    if not _finite(_rows(run / 'metrics_all.csv')): raise CheckFailed('non-finite losses in metrics_all.csv')
    return f"{prec}{' + GradScaler' if precision == 'fp16' else ''}; finite losses, valid F1 {_f(s.get('valid_f1'))}"


def check_fp16(c: Ctx) -> str: return _precision_run(c, 'fp16', 'fp16')
def check_bf16(c: Ctx) -> str: return _precision_run(c, 'bf16', 'bf16')


def bn_drift(model_file: Path) -> tuple[int, float | None]:
    """(how many BatchNorm running statistics of a run's task model file were compared, their largest difference) with
    the offline Lite0 weights the run started from (converted into the check's FASTMASK_CACHE by the run)."""
    import torch
    from safetensors.torch import load_file
    from fastmask.models.lite import converted_path
    ck = torch.load(model_file, map_location='cpu', weights_only=False)
    ref_file = converted_path(ck['arch'])
    if not ref_file.is_file(): raise CheckFailed(f'{ref_file}: the converted Lite0 weights are missing')
    ref, sd = load_file(str(ref_file)), ck['state_dict']
    keys = [k for k in sd if k.endswith(('running_mean', 'running_var')) and k in ref]
    return len(keys), max(((sd[k].float() - ref[k].float()).abs().max().item() for k in keys), default=None)


def check_probe(c: Ctx) -> str:
    out = c.runs / 'probe'
    c.ok(c.fastmask('probe-frozen-bn', *c.quick('cpu_split_lite0', out, '--tasks', 'gender', epochs=1, pretrained=True)))
    run = c.run_dir(out, 'cpu_split_lite0')
    s = c.finished(run)
    r = _read_json(run / 'config.json')['recipe']
    if (r.get('bn'), r.get('head_init'), r.get('pretrained')) != ('frozen', 'probe', True):
        raise CheckFailed(f"recipe bn={r.get('bn')}, head_init={r.get('head_init')}, pretrained={r.get('pretrained')}")
    n, drift = bn_drift(run / 'model_gender.pth')
    if not n: raise CheckFailed('no BatchNorm statistics to compare with the pretrained weights')
    if drift > 1e-6: raise CheckFailed(f"frozen BatchNorm statistics moved by up to {drift:.2e} from the pretrained ones")
    return (f"Lite0 offline weights, probe head + 1 epoch; {n} BN statistics unchanged; "
            f"valid F1 gender {_f(s.get('valid_f1_gender'))}; {c.expect_precision(s, c.auto['precision'])}")


def check_compile(c: Ctx) -> str:
    out = c.runs / 'compile'
    extra = ['--arch', 'test_efficientnet'] if c.cpu else []   # inductor compiles mobilenetv2_100 in minutes on 2 cores
    c.ok(c.fastmask('compile', *c.quick('baseline_mobilenetv2', out, '--compile', *extra, epochs=1)))
    run = c.run_dir(out, 'baseline_mobilenetv2')
    s = c.finished(run)
    if not all(v.get('compile') for v in (s.get('speed') or {'?': {}}).values()): raise CheckFailed(f"speed record: {s.get('speed')}")
    if not (run / 'submission.csv').is_file(): raise CheckFailed('no submission.csv')
    tiny = 'CPU: tiny timm model test_efficientnet (inductor takes minutes for mobilenetv2_100 on 2 cores); ' if c.cpu else ''
    return f"{tiny}trained, validated and predicted compiled; valid F1 {_f(s.get('valid_f1'))}"


def _need_train(c: Ctx) -> Path:
    if c.train_run is None: raise CheckFailed('not run: needs the train check, which failed')
    return c.train_run


def check_predict(c: Ctx) -> str:
    run, dest = _need_train(c), c.tmp / 'predict' / 'submission.csv'
    c.ok(c.fastmask('predict', 'predict', run, '--data', c.data, '--out', dest))
    with (c.data / 'eval' / 'info.csv').open() as f: n = sum(1 for _ in f) - 1
    mine, theirs = _rows(dest), _rows(run / 'submission.csv')
    if len(mine) != n or [r['ImageID'] for r in mine] != [r['ImageID'] for r in theirs]:
        raise CheckFailed(f'{len(mine)} rows for {n} eval images, or not in info.csv order')
    same = sum(a['ans'] == b['ans'] for a, b in zip(mine, theirs))
    if same < 0.9 * n: raise CheckFailed(f"only {same} of {n} answers equal the run's own submission.csv")
    return f"{n} eval images in info.csv order; {same}/{n} answers as the run's submission.csv (the run's runtime)"


def check_evaluate(c: Ctx) -> str:
    run, dest = _need_train(c), c.tmp / 'evaluate'
    c.ok(c.fastmask('evaluate', 'evaluate', run, '--data', c.data, '--out', dest))
    sc = _read_json(dest / 'scores.json')
    if sc.get('precision') != c.auto['precision']:
        raise CheckFailed(f"scores.json precision {sc.get('precision')!r}, expected {c.auto['precision']}")
    return f"scores.json: precision {sc['precision']}, F1 {_f(sc.get('f1'))} on {sc.get('n_images')} eval images"


def check_export(c: Ctx) -> str:
    run, dest = _need_train(c), c.tmp / 'export' / 'model.onnx'
    c.ok(c.fastmask('export-onnx', 'export', run, '--out', dest))
    meta = _read_json(dest.with_name(dest.name + '.json'))
    if not dest.is_file() or not meta.get('checked_images'): raise CheckFailed('no model.onnx, or it was not checked')
    if not meta.get('max_abs_diff', 1) <= 1e-4: raise CheckFailed(f"max |onnx - torch| = {meta.get('max_abs_diff')}")
    return f"{dest.stat().st_size / 2**20:.1f} MiB; max |onnx - torch| = {meta['max_abs_diff']:.1e} on {meta['checked_images']} images"


STUDY_PROBE = r'''
import json, sys, torch
import fastmask.runners.train as train
fits, orig = [], train.fit_task
def fit_task(learn, *a, **kw):   # record the autocast state when each member's fit starts
    dev = learn.dls.device.type if learn.dls.device is not None else 'cpu'
    fits.append(dict(drop_rate=learn.recipe.drop_rate, autocast=torch.is_autocast_enabled(dev)))
    return orig(learn, *a, **kw)
train.fit_task = fit_task
from fastmask.cli import app
code = 0
try: app(sys.argv[1:], prog_name='fastmask')
except SystemExit as e: code = e.code if isinstance(e.code, int) else 1
dev = 'cuda' if torch.cuda.is_available() else 'cpu'
a = torch.ones(8, 8, device=dev)
print('STUDY ' + json.dumps(dict(code=code, fits=fits, autocast_after=torch.is_autocast_enabled(dev), matmul=str((a @ a).dtype))))
'''


def check_study(c: Ctx) -> str:
    out = c.runs / 'study'
    prec = [] if not c.cpu else ['--precision', 'bf16']        # a GPU's auto is bf16 (fp16 before capability 8)
    bad, good = 'baseline_mobilenetv2[drop_rate=2.0]', 'baseline_mobilenetv2'
    p = c.python('study-failure', STUDY_PROBE, 'study', bad, good, '--data', c.data, '--out', out, '--quick',
                 '--epochs', '1', '--size', c.size, '--no-pretrained', *prec)
    d = _json_line(p.stdout, 'STUDY')
    if d['code'] != 1: raise CheckFailed(f"study exit {d['code']} (expected 1: one member failed): {last_line(p.stderr)}")
    study = next((out / 'study').glob('*/study.csv'), None)
    if study is None: raise CheckFailed('no study.csv written')
    rows = _rows(study)
    if [r['status'] for r in rows] != ['failed', 'trained']: raise CheckFailed(f"member statuses {[r['status'] for r in rows]}")
    if 'dropout' not in rows[0]['error']: raise CheckFailed(f"the first member failed otherwise: {rows[0]['error'][:120]}")
    if len(d['fits']) != 2 or any(f['autocast'] for f in d['fits']):
        raise CheckFailed(f"autocast on when a member's fit started: {d['fits']}")
    if d['autocast_after'] or d['matmul'] != 'torch.float32':
        raise CheckFailed(f"after the study: autocast {d['autocast_after']}, a matmul gives {d['matmul']}")
    s = c.finished(Path(rows[1]['run_dir']))
    want = 'bf16' if c.cpu else c.auto['precision']
    got = c.expect_precision(s, want, 'the good member ')
    return (f"member 1 failed in its {want} forward ({rows[0]['error'][:48]}...); member 2 finished at {got}, "
            f"valid F1 {_f(s.get('valid_f1'))}; autocast off at its start and after")


def check_bench(c: Ctx) -> str:
    dest = c.tmp / 'gpu-bench.json'
    small = (['--arch', 'mobilenetv2_100', '--size', c.size, '--bs', '16', '--steps', '4', '--warmup', '1', '--data', c.data]
             if c.cpu else ['--arch', 'mobilenetv2_100,efficientnet_b3', '--size', '128', '--bs', '32', '--steps', '15'])
    c.ok(c.run('gpu-bench', [c.py, BENCH / 'gpu.py', *small, '--json', dest]))
    res = _read_json(dest)
    rows = res.get('rows') or []
    if not rows or not all(math.isfinite(r['ratio']) and r['ratio'] > 0 for r in rows): raise CheckFailed(f'ratios: {rows}')
    peak = [r['peak_fit_gib'] for r in rows if r.get('peak_fit_gib') is not None]
    return ('fit/ceiling ' + ', '.join(f"{r['arch']} {r['ratio']:.2f} ({r['fit_img_s']:.0f} vs {r['ceiling_img_s']:.0f} img/s)"
                                       for r in rows) + f" at {rows[0]['precision']}, {small[3]} px"
            + (f'; peak {max(peak):.1f} GiB' if peak else ''))


CHECKS = [
    Check('auto-precision', check_auto),
    Check('train', check_train, needs=('auto-precision',)),
    Check('resume', check_resume, needs=('auto-precision',)),
    Check('swa', check_swa),
    Check('fp16', check_fp16, cuda_only=True),
    Check('bf16', check_bf16),
    Check('probe-frozen-bn', check_probe, needs=('auto-precision',)),
    Check('compile', check_compile),
    Check('predict', check_predict, needs=('train',)),
    Check('evaluate', check_evaluate, needs=('train',)),
    Check('export-onnx', check_export, needs=('train',)),
    Check('study-failure', check_study, needs=('auto-precision',)),
    Check('gpu-bench', check_bench, exclusive_on_gpu=True),
]
CUDA_ONLY = tuple(ch.name for ch in CHECKS if ch.cuda_only)
#: the order checks start in (the long ones first); the table keeps CHECKS' order
START_ORDER = ('auto-precision', 'compile', 'train', 'resume', 'study-failure', 'probe-frozen-bn', 'swa', 'bf16', 'fp16',
               'predict', 'evaluate', 'export-onnx', 'gpu-bench')


def run_check(c: Ctx, ch: Check) -> Result:
    if ch.cuda_only and c.cpu: return Result(ch.name, SKIP, 0.0, 'CUDA only (--cpu)')
    t = time.perf_counter()
    try: status, note = PASS, ch.fn(c)
    except CheckFailed as e: status, note = FAIL, str(e)
    except Exception as e:   # noqa: BLE001 -- a bug in a check is a failed check, not a crash of the table
        status, note = FAIL, f'{type(e).__name__}: {e}'
    return Result(ch.name, status, time.perf_counter() - t, note)


def run_all(c: Ctx, checks: list[Check], jobs: int, report: Callable[[Result], None]) -> dict[str, Result]:
    "Run the checks, `jobs` at a time, each when what it needs is done; exclusive ones alone on a GPU."
    order = {n: i for i, n in enumerate(START_ORDER)}
    pending = sorted(checks, key=lambda ch: order.get(ch.name, len(order)))
    names = {ch.name for ch in checks}
    done: dict[str, Result] = {}
    running = {}
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        while pending or running:
            alone = any(ch.exclusive_on_gpu and not c.cpu for ch in running.values())
            for ch in list(pending):
                if alone or len(running) >= jobs: break
                if any(n in names and n not in done for n in ch.needs): continue
                if ch.exclusive_on_gpu and not c.cpu:
                    if running or len(pending) > 1: continue          # alone, and after the others
                    alone = True
                pending.remove(ch)
                running[ex.submit(run_check, c, ch)] = ch
            if not running: break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                r = fut.result()
                done[running.pop(fut).name] = r
                report(r)
    return done


def _load() -> str:
    try: return ' '.join(f'{x:.1f}' for x in os.getloadavg())
    except OSError: return '?'


def table(results: list[Result]) -> str:
    w = max([len('check')] + [len(r.name) for r in results])
    lines = [TABLE_HEADER, f"{'check':<{w}}  result  {'seconds':>7}  note"]
    for r in results: lines.append(f'{r.name:<{w}}  {r.status:<6}  {r.seconds:7.1f}  {r.note}')
    return '\n'.join(lines)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cpu', action='store_true', help="run on the CPU (CUDA_VISIBLE_DEVICES=''); CUDA-only checks SKIP")
    ap.add_argument('--jobs', type=int, default=None, help='checks run at once (default: 2 on the CPU, 3 on a GPU)')
    ap.add_argument('--only', default=None, help='comma-separated checks to run (what they need is added)')
    ap.add_argument('--size', type=int, default=None, help='image size of the runs (default 32 with --cpu, else 64)')
    ap.add_argument('--timeout', type=float, default=None, help='seconds a command may take (default 300 with --cpu, else 600)')
    ap.add_argument('--workdir', default=None, help='make the temporary folder here (default: the system temporary folder)')
    ap.add_argument('--keep', action='store_true', help='keep the temporary folder (runs, logs) even when every check passed')
    ap.add_argument('--json', default=None, help='also write the results to this JSON file')
    a = ap.parse_args(argv)
    a.jobs = a.jobs or (2 if a.cpu else 3)
    a.timeout = a.timeout or (300 if a.cpu else 600)
    return a


def select(only: str | None) -> list[Check]:
    if not only: return list(CHECKS)
    by = {ch.name: ch for ch in CHECKS}
    want = [n.strip() for n in only.split(',') if n.strip()]
    unknown = [n for n in want if n not in by]
    if unknown: raise SystemExit(f"unknown check(s) {', '.join(unknown)}; the checks: {', '.join(by)}")
    todo = set()
    def add(n):
        if n in todo: return
        todo.add(n)
        for m in by[n].needs: add(m)
    for n in want: add(n)
    return [ch for ch in CHECKS if ch.name in todo]


def main(argv=None) -> int:
    a = parse(argv)
    checks = select(a.only)
    load0 = _load()
    if a.workdir: Path(a.workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix='fastmask-gpu-check-', dir=a.workdir)).resolve()
    t0 = time.perf_counter()
    c = Ctx(a, tmp)
    print(f"fastmask GPU acceptance ({'CPU mode' if a.cpu else 'CUDA'}): {len(checks)} checks, {a.jobs} at a time, "
          f"size {c.size}, demo data {c.persons} + {c.eval_persons} people; logs in {c.logs}", flush=True)
    sys.path.insert(0, str(ROOT))
    from fastmask.sources.demo import make_demo
    c.data = make_demo(tmp / 'demo', persons=c.persons, eval_persons=c.eval_persons, seed=1)
    n = len(checks)
    def report(r: Result):
        report.i += 1
        print(f'[{report.i:2d}/{n}] {r.name:<16} {r.status}  {r.seconds:6.1f} s  {r.note}', flush=True)
    report.i = 0
    done = run_all(c, checks, a.jobs, report)
    results = [done[ch.name] for ch in checks if ch.name in done]
    wall = time.perf_counter() - t0
    failed = [r for r in results if r.status == FAIL]
    print('\n' + table(results))
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP)}
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall time {wall:.1f} s; {counts[PASS]} PASS, {counts[FAIL]} FAIL, {counts[SKIP]} SKIP; the commands used "
          f"{ru.ru_utime + ru.ru_stime:.0f} CPU-s; load average {load0} before, {_load()} after")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(mode='cpu' if a.cpu else 'cuda', wall_s=round(wall, 1), auto=c.auto,
                                                results=[r.__dict__ for r in results]), indent=1))
    if failed or a.keep: print(f'runs and logs kept in {tmp}')
    else: shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
