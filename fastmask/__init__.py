"""fastmask: fastai recipes for the 18-class mask / gender / age photo classification problem.

The Python API that notebooks use is importable from here (loaded on first use, so `import fastmask` stays light):
`learner`, `run_recipe`, `resume_run`, `open_data`, `get_recipe`, `list_recipes`, `resolve`, `predict_paths`,
`task_probs`, `score_files`.
"""
__version__ = '0.2.0'

import importlib as _importlib
import warnings as _warnings

# fastai's layers module calls torch.jit.script at import time, which torch 2.14 flags as deprecated: not the user's concern
_warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)

#: public name -> module that defines it
API = {
    'learner': 'fastmask.runners.train', 'run_recipe': 'fastmask.runners.run', 'resume_run': 'fastmask.runners.run',
    'open_data': 'fastmask.sources.open', 'get_recipe': 'fastmask.recipes', 'list_recipes': 'fastmask.recipes',
    'resolve': 'fastmask.recipes', 'predict_paths': 'fastmask.inference.predict',
    'task_probs': 'fastmask.inference.predict', 'score_files': 'fastmask.inference.scoring',
}
__all__ = sorted(API)


def __getattr__(name):
    if name in API: return getattr(_importlib.import_module(API[name]), name)
    raise AttributeError(f"module 'fastmask' has no attribute '{name}'")
