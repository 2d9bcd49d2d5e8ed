"""Where each rank of the pre-flight sits (node, host, local rank), and the one gather every
check uses to bring its numbers to rank 0."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import torch.distributed as dist

from trainer.distributed.world_ranks import WorldRanks


@dataclass(frozen=True)
class Place:
    rank: int
    node_rank: int
    local_rank: int
    host: str


def here(world: WorldRanks) -> Place:
    return Place(world.rank, world.node_rank, world.local_rank, socket.gethostname())


def gathered(value, world: WorldRanks) -> list:
    """Every rank's `value`, in rank order, on every rank (the values are small: a few numbers
    or strings per rank). A single process has no group: its own value."""
    if not (world.distributed and dist.is_initialized()):
        return [value]
    values: list = [None] * world.world_size
    dist.all_gather_object(values, value)
    return values


def nodes_of(places: list[Place]) -> dict[int, str]:
    """{node rank: host}, in node order."""
    return {p.node_rank: p.host for p in sorted(places, key=lambda p: p.node_rank)}
