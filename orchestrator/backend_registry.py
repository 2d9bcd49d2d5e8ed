"""Which backends exist: each name and the package that defines it. Adding a backend is its
package plus one line here.

Plain data at the bottom of the orchestrator, so every layer may read it: the spec layer
composes each backend's `launch.<name>:` block (and its cluster-profile keys) from the
backend's `options.py` without importing the backend's behaviour, which sits above the
spec (orchestrator.backends, the registry's API, loads that). Order matters for detection:
the most specific first (`ft launch --backend local` inside a Slurm allocation also sees
SLURM_JOB_ID, but its own variables win).
"""

from __future__ import annotations

import importlib
from typing import Any

REGISTRY: dict[str, str] = {
    "local": "orchestrator.backends.local",
    "dstack": "orchestrator.backends.dstack",
    "skypilot": "orchestrator.backends.skypilot",
    "slurm": "orchestrator.backends.slurm",
    "modal": "orchestrator.backends.modal",
}


def declared_in_options(attribute: str) -> dict[str, Any]:
    """name -> `attribute` of the backend's `<package>.options` module, for the backends
    whose options module declares it (LAUNCH_OPTIONS, PROFILE_OPTIONS). That module holds
    schema only (pydantic models over orchestrator.spec), never the backend's code."""
    found = {}
    for name, package in REGISTRY.items():
        try:
            module = importlib.import_module(f"{package}.options")
        except ModuleNotFoundError as missing:
            if missing.name != f"{package}.options":
                raise
            continue
        value = getattr(module, attribute, None)
        if value is not None:
            found[name] = value
    return found
