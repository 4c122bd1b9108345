"""fastmask: fastai recipes for the 18-class mask / gender / age photo classification problem."""
__version__ = '0.1.0'
