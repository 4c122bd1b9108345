"""The recipe catalogue: importing this package registers every recipe."""
from . import report  # noqa: F401
