"""Asking SkyPilot for the fabric the cluster profile names: it attaches RDMA only with
`network_tier: best`, and all of an instance's EFA interfaces only with
`aws.use_internal_ips`, a ~/.sky/config.yaml setting its API server refuses in a task."""

from __future__ import annotations

from orchestrator.backends.fabric_cloud import RDMA_FABRICS
from orchestrator.clusters import ClusterProfile
from orchestrator.spec.load import Spec
from trainer.torch_free.errors import Problem, SpecError

# What ~/.sky/config.yaml needs for every EFA interface (SkyPilot 0.14 clouds/aws.py warns
# the same; use_ssm or an ssh_proxy_command is how it reaches nodes without public IPs).
SKY_EFA_CONFIG = "aws: {use_internal_ips: true, use_ssm: true}"


def skypilot_network_tier(spec: Spec, profile: ClusterProfile) -> str | None:
    """`network_tier` for SkyPilot's resources: the user's, else `best` for a multi-node job
    on an RDMA profile (without it SkyPilot provisions no InfiniBand / EFA / GPUDirect and
    NCCL falls back to TCP sockets). `standard` with an RDMA profile contradicts it: refused."""
    asked, multi_node = spec.launch.skypilot.network_tier, spec.launch.nodes > 1
    rdma = profile.fabric in RDMA_FABRICS
    if asked == "standard" and rdma and multi_node:
        raise SpecError([Problem("launch.skypilot.network_tier", (
            f"`standard` asks SkyPilot for plain networking, but `cluster: "
            f"{spec.launch.cluster}` expects {profile.fabric} between the nodes: NCCL would "
            "fall back to TCP sockets. Remove `network_tier` (ft asks for `best` with an "
            "RDMA profile), or use `cluster: tcp` for plain networking"))], spec.source)
    if asked is None and rdma and multi_node:
        return "best"
    return asked


def skypilot_fabric_notes(spec: Spec, profile: ClusterProfile, tier: str | None) -> list[str]:
    """Said at render/launch, and written beside `network_tier` in the task file."""
    if profile.fabric != "efa" or tier != "best" or spec.launch.nodes < 2:
        return []
    return [f"SkyPilot attaches only one EFA interface per node (of the 32 of a p5) unless "
            f"~/.sky/config.yaml has `{SKY_EFA_CONFIG}` (or an `ssh_proxy_command` instead of "
            "use_ssm); a task file cannot set it (SkyPilot's API server refuses `config: "
            "{aws: ...}` in a task)"]
