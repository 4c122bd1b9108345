"""Optional packages in tests: skip only where a package is not installed at all.

`pytest.importorskip` skips on any ImportError, so an extra that is installed but broken (a dependency missing, a
bad build) would pass as "not installed". `need` skips only when the package cannot be found; one that is found is
imported, and a failure to import fails the test.
"""
from __future__ import annotations

import importlib
import importlib.util

import pytest

__all__ = ['need', 'installed']


def installed(module: str) -> bool:
    "Whether `module`'s top-level package is installed (found without importing it)."
    return importlib.util.find_spec(module.split('.')[0]) is not None


def need(module: str, reason: str = ''):
    "`module`, imported; the test (or, at module level, the test module) is skipped only if it is not installed."
    if not installed(module): pytest.skip(reason or f'{module} is not installed', allow_module_level=True)
    return importlib.import_module(module)
