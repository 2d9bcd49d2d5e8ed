"""FT_TRAINER_HOOKS: your own code on the Trainer ft builds, without forking ft.

    FT_TRAINER_HOOKS=my_pkg.hooks:install[,other.module:function]

Each function is imported when `ft train` starts (a bad entry fails at once, before any
data or model is loaded) and called with the built `transformers.Trainer` just before
training, on every rank. It may add `TrainerCallback`s (`trainer.add_callback(...)`;
`on_train_end` runs after the last step and before ft saves the final model) or wrap the
trainer's methods. The variable is read from the environment of each rank, so set it in
`launch.env` for a cluster job; `ft launch --backend local` passes the submitting shell's
environment to every emulated node. The module must be importable there (installed, or on
PYTHONPATH). ft's own tests use it to record which rows each rank trained on.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from trainer.torch_free.errors import UserError

HOOKS_ENV = "FT_TRAINER_HOOKS"

Hook = Callable[[object], object]


def load_hooks(value: str | None) -> list[Hook]:
    """The functions FT_TRAINER_HOOKS names, in order; an empty or unset value names none."""
    entries = [entry.strip() for entry in (value or "").split(",") if entry.strip()]
    return [_load(entry) for entry in entries]


def run_hooks(hooks: list[Hook], trainer: object) -> None:
    for hook in hooks:
        hook(trainer)


def _load(entry: str) -> Hook:
    module_name, colon, attribute = entry.partition(":")
    if not colon or not module_name or not attribute:
        raise UserError(f"{HOOKS_ENV}: `{entry}` is not `package.module:function`")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"{HOOKS_ENV}: cannot import `{module_name}` ({exc}); is it "
                        f"installed or on PYTHONPATH on every node?") from exc
    hook = getattr(module, attribute, None)
    if not callable(hook):
        found = "not callable" if hasattr(module, attribute) else "not defined there"
        raise UserError(f"{HOOKS_ENV}: `{entry}`: `{attribute}` is {found} in "
                        f"{module.__file__}")
    return hook
