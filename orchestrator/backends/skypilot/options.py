"""`launch.skypilot:`, the spec's SkyPilot block (LAUNCH_OPTIONS)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.spec.launch_schema import BackendOptions


class SkyPilotOptions(BackendOptions):
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    managed: bool = Field(False, description="Use a managed job (`sky jobs launch`): "
                          "auto-recovery from preemption.")
    network_tier: Literal["standard", "best"] | None = Field(
        None, description="`best` asks for the cloud's RDMA fabric (InfiniBand / EFA / GPUDirect).")
    labels: dict[str, str] = Field(default_factory=dict)


# What the spec layer composes (orchestrator.backend_registry.declared_in_options).
LAUNCH_OPTIONS = SkyPilotOptions
