"""Where this process sits in the job: read once from the launcher's variables.

torchrun (and accelerate launch) describe the job to each worker through RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE and GROUP_RANK. ft reads them in one place, at the start of
`ft train`, and hands the result to whatever needs it (the FSDP mesh, who prints, who
writes), so no module deep inside the trainer consults the environment on its own.
A single process started without a launcher is rank 0 of a world of 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WorldRanks:
    """This process's ranks in torchrun's world (global, local, node) and the sizes they
    count in; not orchestrator/backends/rendezvous.py's `Rendezvous`, the job's nodes as a
    backend describes them to `ft node`."""

    rank: int = 0  # global rank
    world_size: int = 1
    local_rank: int = 0  # rank among the processes of this node
    local_world_size: int = 1  # processes on this node
    node_rank: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorldRanks:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        # A launcher that omits LOCAL_WORLD_SIZE started every rank on this node.
        local_world_size = int(env.get("LOCAL_WORLD_SIZE", str(world_size)))
        node_rank = int(env.get("GROUP_RANK", str(rank // max(local_world_size, 1))))
        return cls(rank=rank, world_size=world_size, local_rank=int(env.get("LOCAL_RANK", "0")),
                   local_world_size=local_world_size, node_rank=node_rank)

    @property
    def is_main(self) -> bool:
        """The one process that speaks for the job (progress, metrics, summary)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1
