"""The recipe catalogue: importing this package registers every recipe."""
from fastmask.recipes.catalogue import report  # noqa: F401
from fastmask.recipes.catalogue import pretrained  # noqa: F401
from fastmask.recipes.catalogue import top  # noqa: F401
from fastmask.recipes.catalogue import composite  # noqa: F401
from fastmask.recipes.catalogue import cpu  # noqa: F401
