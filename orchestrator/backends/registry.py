"""Backend name -> render function. Imported lazily so `ft --help` stays fast."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.rendering import Rendered
from orchestrator.spec import Spec

RENDER_BACKENDS = ("dstack", "skypilot", "slurm")

# The program each backend submits through, and how to get it.
SUBMIT_TOOLS = {
    "dstack": ("dstack", "pip install dstack, then `dstack server` or `dstack config`"),
    "skypilot": ("sky", "pip install 'skypilot[aws]' (or your cloud), then `sky check`"),
    "slurm": ("sbatch", "run ft on a Slurm login node (sbatch must be on PATH)"),
}


def renderer(backend: str) -> Callable[[Spec], Rendered]:
    if backend == "dstack":
        from orchestrator.backends import dstack as module
    elif backend == "skypilot":
        from orchestrator.backends import skypilot as module
    elif backend == "slurm":
        from orchestrator.backends import slurm as module
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return module.render
