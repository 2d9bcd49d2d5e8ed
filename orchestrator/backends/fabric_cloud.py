"""Does the cluster profile's fabric exist where the job runs, and is the backend asked
for it? Checked before rendering.

An InfiniBand profile on AWS (which has EFA, not InfiniBand), or the EFA profile anywhere
but AWS, renders fine and then trains over TCP at a fraction of the speed, or not at all;
refusing it up front names the mismatch and the fix. Only the clouds the spec names are
checked: with none named, the backend may pick any.

An RDMA profile also needs the backend to provision the fabric (each backend asks for it
in its own way), and NCCL reaches EFA only through libfabric and the aws-ofi-nccl plugin in
the image.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.node_steps import default_image
from orchestrator.clusters import ClusterProfile
from orchestrator.spec.load import Spec
from trainer.torch_free.errors import Problem, SpecError

EFA_CLOUD = "aws"  # EFA is AWS's own fabric; AWS offers no InfiniBand
RDMA_FABRICS = ("infiniband", "roce", "efa")


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


def efa_image_notes(spec: Spec, profile: ClusterProfile, own_image: str = "") -> list[str]:
    """The aws-efa profile needs libfabric and aws-ofi-nccl in the image; ft cannot look
    inside an image offline, so it says so instead of staying silent. `own_image`: what the
    backend itself does about it (said after the requirement, starting with "; ")."""
    if profile.fabric != "efa":
        return []
    image = spec.launch.image
    which = (f"`launch.image` ({image})" if image else
             f"ft's default image ({default_image()})")
    return [f"`cluster: aws-efa` needs libfabric (the EFA provider) and the aws-ofi-nccl NCCL "
            f"plugin in the image{own_image}: check that {which} has them (/opt/amazon/efa, "
            "/opt/amazon/aws-ofi-nccl), or name an EFA-ready image such as an AWS Deep "
            "Learning Container in `launch.image`; without them NCCL falls back to TCP "
            "sockets (`ft node` prints the transport NCCL chose)"]
