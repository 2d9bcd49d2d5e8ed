"""`launch.dstack:`, the spec's dstack block (LAUNCH_OPTIONS), and dstack's own key
in a cluster profile (PROFILE_OPTIONS)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.spec.launch_schema import BackendOptions


class DstackOptions(BackendOptions):
    fleets: list[str] = Field(default_factory=list, description="Fleets to run on.")
    backends: list[str] = Field(default_factory=list, description="e.g. [aws, gcp, runpod].")
    regions: list[str] = Field(default_factory=list)
    reservation: str | None = None


class DstackProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dstack_privileged: bool = Field(False, description="Run the dstack container privileged "
                                    "(some clouds need it to reach RDMA devices).")


# What the spec layer composes (orchestrator.backend_registry.declared_in_options).
LAUNCH_OPTIONS = DstackOptions
PROFILE_OPTIONS = DstackProfile
