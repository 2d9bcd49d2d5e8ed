"""`launch.toyq:`, the spec's toyq block (LAUNCH_OPTIONS)."""

from __future__ import annotations

from pydantic import Field, field_validator

from orchestrator.spec.launch_schema import BackendOptions, single_line


class ToyqOptions(BackendOptions):
    queue: str | None = Field(None, description="The toyq queue (default: toyq's own).")
    priority: int | None = Field(None, ge=0, le=9, description="0 (lowest) to 9.")

    _line = field_validator("queue")(single_line)


# What the spec layer composes (orchestrator.backend_registry.declared_in_options).
LAUNCH_OPTIONS = ToyqOptions
