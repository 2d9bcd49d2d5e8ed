"""Does the cluster profile's fabric exist where the job runs, and is the backend asked
for it? Checked before rendering.

An InfiniBand profile on AWS (which has EFA, not InfiniBand), or the EFA profile anywhere
but AWS, renders fine and then trains over TCP at a fraction of the speed, or not at all;
refusing it up front names the mismatch and the fix. Only the clouds the spec names are
checked: with none named, the backend may pick any.

An RDMA profile also needs the backend to provision the fabric: SkyPilot attaches it only
with `network_tier: best` (and all of an instance's EFA interfaces only with
`aws.use_internal_ips`, a ~/.sky/config.yaml setting its API server refuses in a task), and
NCCL reaches EFA only through libfabric and the aws-ofi-nccl plugin in the image.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.node_steps import default_image
from orchestrator.clusters import ClusterProfile
from orchestrator.spec.load import Spec
from trainer.contract.errors import Problem, SpecError

EFA_CLOUD = "aws"  # EFA is AWS's own fabric; AWS offers no InfiniBand
RDMA_FABRICS = ("infiniband", "roce", "efa")
# What ~/.sky/config.yaml needs for every EFA interface (SkyPilot 0.14 clouds/aws.py warns
# the same; use_ssm or an ssh_proxy_command is how it reaches nodes without public IPs).
SKY_EFA_CONFIG = "aws: {use_internal_ips: true, use_ssm: true}"


def check_fabric_on_clouds(spec: Spec, profile: ClusterProfile, clouds: Sequence[str],
                           field: str) -> None:
    """`clouds`: where the spec pins the job (`field` names that key for the message)."""
    named = sorted({cloud.lower() for cloud in clouds})
    cluster = spec.launch.cluster
    if profile.fabric == "infiniband" and EFA_CLOUD in named:
        message = (f"`{cluster}` is an InfiniBand profile, but `{field}` includes aws, whose "
                   "fabric is EFA, not InfiniBand; on AWS use `cluster: aws-efa`, or remove "
                   f"aws from `{field}`")
    elif profile.fabric == "efa" and [cloud for cloud in named if cloud != EFA_CLOUD]:
        others = ", ".join(cloud for cloud in named if cloud != EFA_CLOUD)
        message = (f"`{cluster}` is an EFA profile, and EFA exists only on AWS, but "
                   f"`{field}` names {others}; there use the profile of its fabric "
                   "(infiniband, roce or tcp), or keep the job on aws")
    else:
        return
    raise SpecError([Problem("launch.cluster", message)], spec.source)


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


def efa_image_notes(spec: Spec, profile: ClusterProfile, backend: str) -> list[str]:
    """The aws-efa profile needs libfabric and aws-ofi-nccl in the image; ft cannot look
    inside an image offline, so it says so instead of staying silent."""
    if profile.fabric != "efa":
        return []
    image = spec.launch.image
    which = (f"`launch.image` ({image})" if image else
             f"ft's default image ({default_image()})")
    own = ("; dstack adds them only to its own default image (dstackai/base, which it swaps "
           "for the `-devel-efa` variant on EFA instances), not to an image the task names"
           if backend == "dstack" else "")
    return [f"`cluster: aws-efa` needs libfabric (the EFA provider) and the aws-ofi-nccl NCCL "
            f"plugin in the image{own}: check that {which} has them (/opt/amazon/efa, "
            "/opt/amazon/aws-ofi-nccl), or name an EFA-ready image such as an AWS Deep "
            "Learning Container in `launch.image`; without them NCCL falls back to TCP "
            "sockets (`ft node` prints the transport NCCL chose)"]
