"""The recipe catalogue: importing this package registers every recipe."""
from . import report  # noqa: F401
from . import pretrained  # noqa: F401
from . import top  # noqa: F401
from . import composite  # noqa: F401
