"""Is the training stack installed? The base install (`pip install ft-finetune`) is the CLI only.

A laptop that renders and submits has no torch; the commands that train, or build a
model, say so up front with the one line that fixes it, instead of an ImportError
traceback from deep inside the trainer. `find_spec` looks a module up without importing
it, so the check costs milliseconds and keeps `ft --help` light.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from orchestrator import DISTRIBUTION
from trainer.torch_free.errors import UserError

# What every training run imports (bitsandbytes only for 4/8-bit, deepspeed only for
# `deepspeed:`; the trainer names those itself when a spec needs them).
TRAIN_MODULES = ("torch", "transformers", "peft", "accelerate", "datasets")
INSTALL_HINT = f"pip install '{DISTRIBUTION}[train]'"

P = ParamSpec("P")
R = TypeVar("R")


def missing_train_modules() -> list[str]:
    return [name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None]


def require_train_stack(what: str) -> None:
    """Raise a UserError (exit 2, no traceback) naming what is missing and the fix."""
    missing = missing_train_modules()
    if missing:
        raise UserError(f"{what} needs the training stack, which this install lacks "
                        f"({', '.join(missing)}): {INSTALL_HINT}")


def needs_train_stack(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a typer command; `functools.wraps` keeps its signature for typer."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            require_train_stack(what)
            return command(*args, **kwargs)

        return checked

    return decorate
