"""fastmask: fastai recipes for the 18-class mask / gender / age photo classification problem."""
__version__ = '0.1.0'

import warnings as _warnings

# fastai's layers module calls torch.jit.script at import time, which torch 2.14 flags as deprecated: not the user's concern
_warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
