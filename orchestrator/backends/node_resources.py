"""One resources model for every backend: what a node needs, derived once from the spec.

Each backend used to size nodes its own way for the same spec (8 CPUs per GPU on one, a
2-CPU floor on another, nothing on a third). Here every figure is derived by one rule and
overridable in `launch:`; the renderers only spell it in their syntax, and say so when a
backend cannot express a value the user set.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.backends.render_common import size_gb
from orchestrator.spec.load import Spec

# Per GPU: dataloader workers, tokenisation and NCCL's proxy threads. Real 8-GPU nodes have
# 96-224 cores; 8 per GPU asks for what the job uses without excluding common shapes.
CPUS_PER_GPU = 8
MIN_CPUS = 2


@dataclass(frozen=True)
class NodeResources:
    cpus: int  # at least this many per node
    memory_gb: int | None  # at least this much host memory; None: no minimum asked
    shm_gb: int  # /dev/shm in the container (NCCL, dataloader workers)
    disk_gb: int  # local disk for the image, caches and checkpoints in flight
    explicit: frozenset[str]  # launch keys the user set (a backend that ignores one says so)


def node_resources(spec: Spec) -> NodeResources:
    launch = spec.launch
    cpus = launch.cpus_per_node or max(MIN_CPUS, CPUS_PER_GPU * launch.gpus_per_node)
    return NodeResources(
        cpus=cpus,
        memory_gb=size_gb(launch.memory) if launch.memory else None,
        shm_gb=size_gb(launch.shm_size),
        disk_gb=size_gb(launch.disk),
        explicit=frozenset(launch.model_fields_set & {"cpus_per_node", "memory", "shm_size",
                                                      "disk"}),
    )
