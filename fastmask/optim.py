"""Optimizers by name: fastai's own where it has one."""
from __future__ import annotations

from functools import partial
from typing import Callable

from fastai.optimizer import SGD, Adam

from .errors import RecipeError

__all__ = ['OPTIMIZERS', 'register_opt', 'get_opt']

OPTIMIZERS: dict[str, Callable] = {}


def register_opt(name: str):
    "Register a factory `f() -> fastai opt_func` under `name`."
    def deco(f):
        OPTIMIZERS[name] = f
        return f
    return deco


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


def get_opt(name: str):
    "The fastai `opt_func` named `name`."
    if name not in OPTIMIZERS: raise RecipeError(f"unknown optimizer '{name}' (one of {', '.join(sorted(OPTIMIZERS))})")
    return OPTIMIZERS[name]()
