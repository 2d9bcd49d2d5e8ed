"""Where the shipped templates and cluster profiles live.

In a wheel they are package data (`orchestrator/templates`, `orchestrator/clusters`); in a
source checkout they sit at the repo's top level. Both layouts must work, because tests run
from the checkout and users run the installed package from any directory.
"""

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory holding the shipped `templates` or `clusters` files."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"ft's {name}/ directory is missing from this installation")
