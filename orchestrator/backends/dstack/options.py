"""`launch.dstack:`, the spec's dstack block (DstackBackend.options)."""

from __future__ import annotations

from pydantic import Field

from orchestrator.spec.launch_schema import BackendOptions


class DstackOptions(BackendOptions):
    fleets: list[str] = Field(default_factory=list, description="Fleets to run on.")
    backends: list[str] = Field(default_factory=list, description="e.g. [aws, gcp, runpod].")
    regions: list[str] = Field(default_factory=list)
    reservation: str | None = None
