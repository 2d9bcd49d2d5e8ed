"""The data-parallel layout of an FSDP job: how many GPUs each weight is sharded over and how
many copies of that shard group there are (Axolotl's `dp_shard_size` / `dp_replicate_size`).

Torch-free: `ft validate` checks the sizes against the launch block's GPU count, and the
trainer builds its device mesh (trainer/distributed/device_mesh.py) from the same answer, so
what validation passes, training lays out the same way.

Axolotl's rules (utils/distributed.py, `_get_parallel_config_kwargs`), followed here:
- neither size: shard over every GPU (plain FSDP, one replica);
- one size: the other is the world size divided by it (it must divide);
- both: their product must be the world size;
- `dp_shard_size: 1` alone asks for nothing: the world is still sharded as a whole, as in
  Axolotl. Replication everywhere (DDP semantics) is `dp_shard_size: 1` with
  `dp_replicate_size` = the world size.
"""

from __future__ import annotations

from dataclasses import dataclass

SHARD_KEY, REPLICATE_KEY = "dp_shard_size", "dp_replicate_size"


class MeshSizeError(ValueError):
    """The sizes do not fit the world; the message names both keys and the numbers."""


@dataclass(frozen=True)
class DpMesh:
    replicate: int  # copies of each shard group (mesh dim "replicate")
    shard: int  # GPUs one weight is split over (mesh dim "shard")

    @property
    def is_hybrid(self) -> bool:
        """Sharded and replicated both: HSDP (gradients all-reduced across replicas)."""
        return self.replicate > 1 and self.shard > 1

    def describe(self) -> str:
        if self.replicate == 1:
            return f"sharded over all {self.shard} GPUs"
        if self.shard == 1:
            return f"replicated on all {self.replicate} GPUs (nothing sharded)"
        return (f"HSDP: sharded over {self.shard} GPUs, {self.replicate} replicas of that "
                "group")


def asks_for_layout(shard: int | None, replicate: int | None) -> bool:
    """Whether the spec says anything beyond plain FSDP (`dp_shard_size: 1` alone does not)."""
    return (replicate or 1) > 1 or (shard or 1) > 1


def resolve(shard: int | None, replicate: int | None, world: int) -> DpMesh:
    """The (replicate, shard) layout for `world` GPUs, or MeshSizeError saying how to fix it."""
    if not asks_for_layout(shard, replicate):
        return DpMesh(replicate=1, shard=world)
    if shard is not None and replicate is not None:
        if shard * replicate != world:
            raise MeshSizeError(
                f"`{SHARD_KEY}: {shard}` x `{REPLICATE_KEY}: {replicate}` = {shard * replicate}, "
                f"but the job has {world} GPUs; their product must equal the GPU count "
                f"(e.g. `{SHARD_KEY}`: GPUs per node, `{REPLICATE_KEY}`: nodes)")
        return DpMesh(replicate=replicate, shard=shard)
    key, given = (SHARD_KEY, shard) if shard is not None else (REPLICATE_KEY, replicate)
    if world % given:
        other = REPLICATE_KEY if key == SHARD_KEY else SHARD_KEY
        raise MeshSizeError(
            f"`{key}: {given}` does not divide the job's {world} GPUs, so `{other}` "
            f"(the rest) cannot be a whole number; pick a divisor of {world}")
    return DpMesh(replicate=world // given, shard=given) if key == SHARD_KEY else \
        DpMesh(replicate=given, shard=world // given)


def shard_group_size(shard: int | None, replicate: int | None, world: int) -> int:
    """What one GPU's share of the sharded weights is divided by: the shard group under
    HSDP (each GPU holds 1/`dp_shard_size` of the model, not 1/world), else the world. Sizes
    that do not fit are reported by `resolve` where it is called; here they count as unset."""
    try:
        return resolve(shard, replicate, world).shard
    except MeshSizeError:
        return world
