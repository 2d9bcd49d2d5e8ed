"""The registry's API: each backend (`get`), the lists ft shows, detection on a node.

The names and packages themselves are orchestrator/backend_registry.py (one line per
backend). Every list of backends ft shows (CLI choices, `ft node` detection, emulation) comes
from here. Nothing outside the two registry modules and each backend's own package names a
backend (tests/test_backend_names.py). A backend's module is imported on first use; building
the CLI uses every one (its examples and stage help come from the backends), about 15 ms.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrator.backend_registry import REGISTRY

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend

# Whose node variables emulated nodes get unless `--emulate` says (a backend whose nodes
# share the submit directory, like most clusters'); the backend `--help` examples name it.
DEFAULT_EMULATION = "slurm"


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Backend:
    """The backend called `name` (each module defines one instance, `BACKEND`)."""
    from trainer.torch_free.errors import UserError

    if name not in REGISTRY:
        raise UserError(f"unknown backend {name!r}; use one of {', '.join(REGISTRY)}")
    backend = importlib.import_module(REGISTRY[name]).BACKEND
    assert backend.name == name, f"{REGISTRY[name]} defines {backend.name!r}, not {name!r}"
    return backend


def render_names() -> list[str]:
    """Backends that write launch files and submit them (everything but `local`)."""
    return [name for name in REGISTRY if get(name).renders]


def check_stages(backend: Backend, stages: Sequence[str]) -> None:
    """`backend.check_stages`; one without stages also says which backends have them."""
    from trainer.torch_free.errors import UserError

    try:
        backend.check_stages(stages)
    except UserError as refused:
        if backend.stages:
            raise
        able = [name for name in REGISTRY if get(name).stages]
        raise UserError(f"{refused} ({', '.join(able) or 'none'})") from None


def detect(environ: Mapping[str, str]) -> str | None:
    """The backend whose node variables are present, or None when none is."""
    for name in REGISTRY:
        if any(environ.get(variable) for variable in get(name).node_vars.detect):
            return name
    return None
