"""Many GPUs (or CPU processes): fastai's `DistributedTrainer` under Accelerate, fixed for CPU/gloo; rank 0 writes.

Launch with `torchrun --nproc_per_node N -m fastmask recipe NAME ...`, `accelerate launch --multi_gpu
--num_processes N -m fastmask recipe NAME ...` or `fastmask recipe NAME --gpus N` (which runs torchrun).
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from fastai.distributed import DistributedDL, DistributedTrainer
from fastai.torch_core import num_distrib, rank_distrib

__all__ = ['world_size', 'rank', 'is_distributed', 'init_distributed', 'barrier', 'FastmaskDistributedDL',
           'FastmaskDistributedTrainer', 'distrib_fit', 'rank0_run_dir', 'rank0_resume_dir', 'main_dir', 'launch_command', 'launch', 'gpus_relaunch']

_MAIN_DIRS: dict[Path, Path] = {}   # scratch run folder of a rank > 0 -> rank 0's run folder
_HIDDEN: dict[str, str] = {}         # WORLD_SIZE, hidden from fastai between distributed fits (see `distrib_fit`)


def world_size() -> int:
    "Number of processes of this run (1 when not launched by torchrun/accelerate)."
    return int(_HIDDEN.get('WORLD_SIZE', 0)) or max(1, num_distrib())


def rank() -> int:
    "This process's rank (0 when not distributed)."
    return rank_distrib()


def is_distributed() -> bool:
    "Whether this process is one of several launched by torchrun or accelerate."
    return world_size() > 1


def init_distributed():
    "Accelerate's process state: joins the process group (nccl on GPUs, gloo on CPUs) and sets this rank's GPU."
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available())


def barrier():
    "Wait for every process (no-op when not distributed)."
    if is_distributed() and torch.distributed.is_initialized(): torch.distributed.barrier()


def _show_world(show: bool):
    "Let fastai see the process group (inside fits) or not (elsewhere: `get_preds` must not gather across ranks)."
    if show and 'WORLD_SIZE' in _HIDDEN: os.environ['WORLD_SIZE'] = _HIDDEN.pop('WORLD_SIZE')
    elif not show and num_distrib() > 1: _HIDDEN['WORLD_SIZE'], os.environ['WORLD_SIZE'] = os.environ['WORLD_SIZE'], '1'


class FastmaskDistributedDL(DistributedDL):
    "fastai's `DistributedDL` whose index broadcast uses the process group's device (gloo takes CPU tensors)."
    def _broadcast(self, t, rank):
        dev = 'cuda' if torch.distributed.get_backend() == 'nccl' else 'cpu'
        t = torch.tensor(t, dtype=torch.long, device=dev)
        torch.distributed.broadcast(t, rank)
        return t.cpu().tolist()


class FastmaskDistributedTrainer(DistributedTrainer):
    """fastai's `DistributedTrainer` with three fixes for torch >= 2.x, CPU runs and `accelerate launch`.

    - `_wrap_dl` read `self.learn.model.device`, which a `DistributedDataParallel` wrapper does not have: the
      device now comes from the Accelerator (`cuda:LOCAL_RANK`, or `cpu`).
    - loaders are `FastmaskDistributedDL`, whose index broadcast works with the gloo backend (CPU tensors).
    - the Accelerator never mixes precision itself: `accelerate launch` with mixed precision configured would wrap
      the forward in fp16 autocast without loss scaling (fastai's loop never calls the accelerator's backward);
      precision is the run's runtime's, applied by `callbacks.speed` (with a GradScaler for fp16).
    Rank 0's sampler draw (balanced mask or weighted) is broadcast and sharded by rank, so each drawn photo is seen
    by exactly one process per epoch; validation predictions are gathered, so metrics cover the whole valid set.
    """
    def __init__(self, sync_bn: bool | None = None, **kwargs):
        super().__init__(sync_bn=torch.cuda.is_available() if sync_bn is None else sync_bn,
                         **{**kwargs, 'mixed_precision': 'no'})

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else FastmaskDistributedDL(dl, device=self.accelerator.device)


def main_dir(path) -> Path:
    "Rank 0's folder for a path under this rank's scratch run folder (the path itself on rank 0)."
    path = Path(path)
    for scratch, main in _MAIN_DIRS.items():
        if path == scratch or scratch in path.parents: return main / path.relative_to(scratch)
    return path


@contextmanager
def distrib_fit(learn, sync_bn: bool | None = None):
    """Fit `learn` with DistributedDataParallel when launched as several processes; a no-op otherwise.

    Outside these fits every rank works alone on the whole data (validation and eval predictions, identical on all
    ranks): fastai's `to_detach` gathers across processes whenever WORLD_SIZE > 1, which would mix the ranks'
    copies of the same predictions, so WORLD_SIZE is shown to fastai only during the fit.
    """
    if not is_distributed():
        yield learn
        return
    from fastai.callback.progress import ProgressCallback
    _show_world(True)
    init_distributed()
    cb, old_path = FastmaskDistributedTrainer(sync_bn=sync_bn), learn.path
    learn.add_cb(cb)
    if rank(): learn.remove_cb(ProgressCallback)
    learn.path = main_dir(learn.path)   # best-model checkpoints: rank 0 saves, every rank loads the same file
    try: yield learn
    finally:
        learn.remove_cb(cb)
        learn.path = old_path
        barrier()                       # nobody deletes the checkpoint while another rank still loads it
        _show_world(False)


def rank0_run_dir(make, *args, **kwargs) -> Path:
    "`make(*args)` on rank 0 (the run folder); other ranks get a scratch folder, deleted at exit, for their writes."
    if not is_distributed(): return make(*args, **kwargs)
    state = init_distributed()
    obj = [str(make(*args, **kwargs)) if state.is_main_process else None]
    torch.distributed.broadcast_object_list(obj, src=0)
    if state.is_main_process: return Path(obj[0])
    scratch = Path(tempfile.mkdtemp(prefix=f'fastmask-rank{rank()}-'))
    atexit.register(shutil.rmtree, scratch, True)
    _MAIN_DIRS[scratch] = Path(obj[0])
    return scratch


def rank0_resume_dir(run_dir) -> Path:
    """The folder a process continues an interrupted run in: the run folder on rank 0; on other ranks a scratch copy
    (their writes go there; checkpoints are read from rank 0's folder through `main_dir`), deleted at exit. Joins the
    process group first, so each rank's loaders are built on its own GPU."""
    run_dir = Path(run_dir)
    if not is_distributed(): return run_dir
    state = init_distributed()
    if state.is_main_process: work = run_dir
    else:
        work = Path(tempfile.mkdtemp(prefix=f'fastmask-rank{rank()}-'))
        shutil.copytree(run_dir, work, dirs_exist_ok=True)
        atexit.register(shutil.rmtree, work, True)
        _MAIN_DIRS[work] = run_dir
    barrier()   # every copy is made before rank 0 writes anything
    return work


def launch_command(argv: list[str], nproc: int, nnodes: int = 1) -> list[str]:
    "The torchrun command that runs `python -m fastmask *argv` in `nproc` processes per machine."
    return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', f'--nnodes={nnodes}',
            *(['--standalone'] if nnodes == 1 else []), '-m', 'fastmask', *argv]


def launch(argv: list[str], nproc: int) -> int:
    "Run `fastmask *argv` in `nproc` processes on this machine (one per GPU) and return the exit status."
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '1')
    return subprocess.call(launch_command(argv, nproc), env=env)


def gpus_relaunch(gpus: int | None, argv: list[str]) -> int | None:
    "For `--gpus N` (N > 1) outside a launched run: rerun the command under torchrun and return its status."
    if not gpus or gpus < 2 or is_distributed(): return None
    rest, skip = [], False
    for a in argv:
        if skip: skip = False
        elif a == '--gpus': skip = True
        elif not a.startswith('--gpus='): rest.append(a)
    status = launch(rest, gpus)
    if status: raise SystemExit(status)
    return status
