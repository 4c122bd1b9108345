"""Optimizers by name: fastai's own where it has one, pytorch-optimizer's AdamP and MADGRAD through `OptimWrapper`."""
from __future__ import annotations

from functools import partial
from typing import Callable

from fastai.optimizer import SGD, Adam, OptimWrapper

from fastmask.errors import MissingExtraError, RecipeError

__all__ = ['OPTIMIZERS', 'register_opt', 'get_opt', 'wrapped', 'CONTIGUOUS_ONLY']

OPTIMIZERS: dict[str, Callable] = {}
#: optimizers that `.view()` their gradients and so fail on channels-last weights (pytorch-optimizer's AdamP)
CONTIGUOUS_ONLY = {'adamp'}


def register_opt(name: str):
    "Register a factory `f() -> fastai opt_func` under `name`."
    def deco(f):
        OPTIMIZERS[name] = f
        return f
    return deco


def wrapped(opt_class) -> Callable:
    "A fastai `opt_func` for a torch optimizer class: `OptimWrapper` maps lr, wd (weight_decay) and mom (betas[0] or momentum)."
    def opt_func(params, **kwargs): return OptimWrapper(params, opt_class, **kwargs)
    opt_func.__name__ = opt_func.__qualname__ = opt_class.__name__
    return opt_func


def _pytorch_optimizer(name: str):
    "A class of the optional pytorch-optimizer package, imported lazily."
    try: import pytorch_optimizer
    except ImportError: raise MissingExtraError('pytorch-optimizer', 'optim', f'the {name} optimizer') from None
    return getattr(pytorch_optimizer, name)


@register_opt('adam')
def adam():
    "Adam with L2 weight decay (torch.optim.Adam's convention)."
    return partial(Adam, decouple_wd=False)


@register_opt('adamw')
def adamw():
    "Adam with decoupled weight decay (fastai's default Adam)."
    return partial(Adam, decouple_wd=True)


@register_opt('sgd')
def sgd():
    "SGD with momentum 0.9."
    return partial(SGD, mom=0.9)


@register_opt('adamp')
def adamp():
    "AdamP (Heo et al. 2021) from pytorch-optimizer: Adam that projects out the radial part of scale-invariant weights' updates."
    return wrapped(_pytorch_optimizer('AdamP'))


@register_opt('madgrad')
def madgrad():
    "MADGRAD (Defazio & Jelassi 2021) from pytorch-optimizer: dual-averaged adaptive momentum."
    return wrapped(_pytorch_optimizer('MADGRAD'))


def get_opt(name: str):
    "The fastai `opt_func` named `name`."
    if name not in OPTIMIZERS: raise RecipeError(f"unknown optimizer '{name}' (one of {', '.join(sorted(OPTIMIZERS))})")
    return OPTIMIZERS[name]()
