"""User-facing errors: each prints as one line in the CLI, never as a traceback."""

__all__ = ['FastmaskError', 'LayoutError', 'RecipeError', 'WeightsError', 'MissingExtraError']


class FastmaskError(Exception):
    "Base of every error caused by user input; the CLI prints its message on one line."


class LayoutError(FastmaskError, ValueError):
    "A data folder or CSV that does not match the expected layout."


class RecipeError(FastmaskError, KeyError):
    "An unknown recipe or a bad recipe option."
    def __str__(self): return str(self.args[0]) if self.args else ''


class WeightsError(FastmaskError, RuntimeError):
    "Pretrained weights that cannot be found or do not fit the architecture."


class MissingExtraError(FastmaskError, ImportError):
    "An optional dependency that is not installed; the message says how to install it."
    def __init__(self, package: str, extra: str, what: str = ''):
        super().__init__(f"{what or package} needs the optional package '{package}': pip install 'fastmask[{extra}]'")
