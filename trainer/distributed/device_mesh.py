"""The device mesh FSDP2 shards over: 1-D (every rank one shard group), or 2-D
("replicate", "shard") for HSDP, where each weight is split over the ranks of one shard group
and every group holds the same shards.

Ranks are laid out row-major, so a shard group is `shard` consecutive global ranks: with
`dp_shard_size` = GPUs per node (torchrun numbers a node's ranks consecutively) the
per-layer all-gathers and reduce-scatters stay inside a node, and only one gradient
all-reduce per step crosses the nodes, between the replicas.

Where the sizes come from: `dp_shard_size` / `dp_replicate_size` when the spec sets them
(trainer/torch_free/dp_mesh.py resolves them, as `ft validate` does), else
`fsdp_config.sharding_strategy` (HYBRID_SHARD: one shard group per node; NO_SHARD: every
rank its own replica), else one group of every rank.
"""

from __future__ import annotations

import logging

import torch

from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free import dp_mesh
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.fsdp")

DIM_NAMES = ("replicate", "shard")


class MeshError(UserError, ValueError):
    """The spec's sizes do not fit the ranks torchrun started."""


def check_dp_sizes(cfg: TrainingConfig, world: WorldRanks) -> None:
    """Before anything loads: the sizes must fit the ranks this job really has (a plain
    Axolotl config has no launch block, so `ft validate` could not check them)."""
    shard, replicate = cfg.dp_shard_size, cfg.dp_replicate_size
    if not dp_mesh.asks_for_layout(shard, replicate):
        return
    if not cfg.uses_fsdp:
        # Validation refuses a shard size without FSDP; a replica count must be every rank.
        if replicate not in (None, world.world_size):
            raise MeshError(f"`{dp_mesh.REPLICATE_KEY}: {replicate}` without FSDP: every "
                            f"one of the {world.world_size} ranks holds a whole replica (DDP); "
                            f"set it to {world.world_size}, or add `fsdp_config` for HSDP")
        return
    layout_for(shard, replicate, world)


def layout_for(shard: int | None, replicate: int | None, world: WorldRanks) -> dp_mesh.DpMesh:
    try:
        return dp_mesh.resolve(shard, replicate, world.world_size)
    except dp_mesh.MeshSizeError as exc:
        raise MeshError(f"{exc} (torchrun started {world.world_size} processes: "
                        f"{world.world_size // max(world.local_world_size, 1)} node(s) x "
                        f"{world.local_world_size})") from None


def build_mesh(device: torch.device, strategy: str, world: WorldRanks,
               shard: int | None = None, replicate: int | None = None):
    """The mesh for `fully_shard(mesh=...)`: dp sizes first, then the strategy's."""
    from torch.distributed.device_mesh import init_device_mesh

    if dp_mesh.asks_for_layout(shard, replicate):
        layout = layout_for(shard, replicate, world)
        if world.is_main:
            given = ", ".join(f"`{key}: {value}`" for key, value in
                              ((dp_mesh.SHARD_KEY, shard), (dp_mesh.REPLICATE_KEY, replicate))
                              if value is not None)
            log.info("%s on %d ranks: %s", given, world.world_size, layout.describe())
        if layout.replicate == 1:
            return init_device_mesh(device.type, (layout.shard,))
        return init_device_mesh(device.type, (layout.replicate, layout.shard),
                                mesh_dim_names=DIM_NAMES)
    size, per_node = world.world_size, world.local_world_size
    if strategy == "HYBRID_SHARD":
        if size % per_node:
            raise MeshError(f"`fsdp_config.sharding_strategy: HYBRID_SHARD` needs the "
                            f"same number of GPUs on every node ({size} ranks, "
                            f"{per_node} on this one)")
        return init_device_mesh(device.type, (size // per_node, per_node),
                                mesh_dim_names=DIM_NAMES)
    if strategy == "NO_SHARD":
        return init_device_mesh(device.type, (size, 1), mesh_dim_names=DIM_NAMES)
    return init_device_mesh(device.type, (size,))
