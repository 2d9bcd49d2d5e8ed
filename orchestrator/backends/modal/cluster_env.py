"""Modal's cluster info as the variables `ft node` reads (FT_MODAL_*).

Modal sets no rank or peer variables of its own: a clustered function asks
`modal.experimental.get_cluster_info()` (rank, container_ips, container_ipv4_ips) at run time.
Nor a job id that outlives a restart (MODAL_TASK_ID names the container, new on every retry):
the app passes `modal.current_function_call_id()`, which a retry or a preemption keeps
(Modal restarts the function on the same input) and each `ft launch` spawns anew.
`--emulate modal` builds the same object for emulated containers and maps it here. The
rendered app runs on the image's own Python, where ft is not importable, so it spells the same
mapping out (`_node_env` in templates/modal.app.py.j2); tests/test_modal_app.py holds the two
equal. Torch-free and modal-free: it only reads the three attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

RANK = "FT_MODAL_NODE_RANK"
NODE_IPS = "FT_MODAL_NODE_IPS"  # one address per line, in rank order: the master first
NUM_NODES = "FT_MODAL_NUM_NODES"
GPUS_PER_NODE = "FT_MODAL_GPUS_PER_NODE"
JOB_ID = "FT_MODAL_JOB_ID"  # the train stage's function call id


class ClusterInfo(Protocol):
    """The part of modal's ClusterContext (modal/_cluster.py) that ft reads."""

    rank: int
    container_ips: list[str]
    container_ipv4_ips: list[str]


@dataclass(frozen=True)
class FixedCluster:
    """Cluster info known in advance: by default one container (a function that is not
    clustered, rank 0, its own master); `--emulate modal` gives N containers on localhost."""

    rank: int = 0
    container_ips: list[str] = field(default_factory=lambda: ["::1"])
    container_ipv4_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])


def node_env(info: ClusterInfo, gpus_per_node: int, job_id: str) -> dict[str, str]:
    """The FT_MODAL_* variables for this container. IPv4 when Modal gives it (every NCCL
    socket setup handles it); otherwise the IPv6 addresses of Modal's private network."""
    addresses = list(info.container_ipv4_ips) or list(info.container_ips)
    return {RANK: str(info.rank), NODE_IPS: "\n".join(addresses),
            NUM_NODES: str(len(addresses)), GPUS_PER_NODE: str(gpus_per_node), JOB_ID: job_id}
