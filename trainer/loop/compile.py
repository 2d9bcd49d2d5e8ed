"""`torch_compile` and its backend and mode, as the Trainer's own arguments.

The Trainer hands them to accelerate, which compiles the model once it is prepared (after
FSDP wrapping, so each compiled graph sees the sharded layers). Compile errors are not
suppressed: a model that does not compile fails at the first step with torch's message,
instead of silently training uncompiled as Axolotl's `suppress_errors` setting would.
"""

from __future__ import annotations

from typing import Any


def compile_args(cfg) -> dict[str, Any]:
    """TrainingArguments keywords; `torch_compile: auto` compiles, as in Axolotl."""
    if not cfg.torch_compile:
        return {}
    args: dict[str, Any] = {"torch_compile": True}
    if cfg.torch_compile_backend:
        args["torch_compile_backend"] = cfg.torch_compile_backend
    if cfg.torch_compile_mode:
        args["torch_compile_mode"] = cfg.torch_compile_mode
    return args
