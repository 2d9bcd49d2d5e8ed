"""Does the cluster profile's fabric exist where the job runs? Checked before rendering.

An InfiniBand profile on AWS (which has EFA, not InfiniBand), or the EFA profile anywhere
but AWS, renders fine and then trains over TCP at a fraction of the speed, or not at all;
refusing it up front names the mismatch and the fix. Only the clouds the spec names are
checked: with none named, the backend may pick any.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.clusters import ClusterProfile
from orchestrator.spec.load import Spec
from trainer.contract.errors import Problem, SpecError

EFA_CLOUD = "aws"  # EFA is AWS's own fabric; AWS offers no InfiniBand


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
