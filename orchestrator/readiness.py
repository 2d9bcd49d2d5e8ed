"""`ft validate`: the checks `ft render` / `ft launch` make, run for every backend at once.

`local` (the job runs here) also needs the job's paths and GPUs here (spec/local_checks.py).

A spec can be fine for one backend and not for another (one that needs `launch.gpu`), and a plain
Axolotl config with `fsdp` is fine for training but not for a launch of the default single
GPU. Validation renders each backend in memory (pure, offline), so what it calls ready is
exactly what render and launch accept, and a refusal says which backend needs what.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from orchestrator import backends
from orchestrator.spec.load import load_spec
from orchestrator.spec.local_checks import local_launch_problems
from trainer.torch_free.errors import Problem, SpecError, UserError


def backend_problems(spec_path: Path, backend: str, overrides: dict[str, Any],
                     notes: list[str] | None = None) -> list[Problem]:
    """What stops `ft render/launch --backend backend` (empty: it is ready); the render's
    notes (settings ignored, what the image must have) are added to `notes`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # already printed by the plain validation
            spec = load_spec(spec_path, overrides, for_launch=True)
            registered = backends.get(backend)
            refused = registered.spec_problems(spec)  # what the backend says it cannot run
            if refused:
                return refused
            if registered.renders:
                (notes if notes is not None else []).extend(registered.render(spec).notes)
            else:  # the job runs on this machine: its paths and GPUs must be here
                problems = local_launch_problems(spec)
                if problems:
                    return problems
    except SpecError as exc:
        return exc.problems
    except UserError as exc:
        return [Problem("", str(exc))]
    return []


def readiness(spec_path: Path, names: list[str], overrides: dict[str, Any],
              notes: dict[str, list[str]] | None = None) -> dict[str, list[Problem]]:
    """Problems per backend; with `notes`, each ready backend's render notes go there."""
    notes = {} if notes is None else notes
    return {name: backend_problems(spec_path, name, overrides, notes.setdefault(name, []))
            for name in names}


def yaml_has_launch(effective_text: str) -> bool:
    """Whether the spec has a `launch:` section (a plain Axolotl config has none)."""
    import yaml

    data = yaml.safe_load(effective_text) or {}
    return bool(data.get("launch"))
