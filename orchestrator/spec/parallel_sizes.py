"""`ft validate`'s checks of `dp_shard_size` / `dp_replicate_size` (Axolotl's FSDP mesh sizes):
what they need from the rest of the spec, and, when the launch block says how many GPUs the
job has, that they fit that count (trainer/torch_free/dp_mesh.py holds the arithmetic the
trainer uses too)."""

from __future__ import annotations

from collections.abc import Iterator

from trainer.torch_free import dp_mesh
from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple[str, ...], str]
SHARD, REPLICATE = dp_mesh.SHARD_KEY, dp_mesh.REPLICATE_KEY


def _no_shard(t: TrainingConfig) -> bool:
    fc = t.fsdp_config
    words = t.fsdp if isinstance(t.fsdp, list) else (t.fsdp or "").split()
    explicit = fc is not None and "sharding_strategy" in fc.model_fields_set
    return fc.sharding_strategy == "NO_SHARD" if explicit else \
        "no_shard" in [w.lower() for w in words]


def dp_size_problems(t: TrainingConfig) -> Iterator[Rule]:
    """Rules that hold whatever the GPU count."""
    shard, replicate = t.dp_shard_size or 1, t.dp_replicate_size or 1
    if t.deepspeed and (shard > 1 or replicate > 1):
        key = SHARD if shard > 1 else REPLICATE
        yield (key,), (f"`{key}` lays out FSDP's device mesh; DeepSpeed ZeRO partitions by "
                       "its own config. Remove it, or use `fsdp_config` instead of `deepspeed`")
    elif shard > 1 and not t.uses_fsdp:
        yield (SHARD,), (f"`{SHARD}: {shard}` shards the weights with FSDP, which this spec "
                         "does not use; add `fsdp_config:` (e.g. `fsdp_version: 2`) or "
                         "remove it")
    if shard > 1 and t.uses_fsdp and _no_shard(t):
        yield (SHARD,), (f"`{SHARD}: {shard}` shards each weight, while the NO_SHARD "
                         "strategy replicates them; keep one (replication on every GPU is "
                         f"`{SHARD}: 1` with `{REPLICATE}` = the GPU count)")


def dp_world_problems(t: TrainingConfig, gpus: int) -> Iterator[Rule]:
    """The sizes against the job's `gpus` (nodes x GPUs per node)."""
    if not dp_mesh.asks_for_layout(t.dp_shard_size, t.dp_replicate_size) or t.deepspeed:
        return
    key = SHARD if t.dp_shard_size is not None else REPLICATE
    if not t.uses_fsdp:
        if t.dp_replicate_size not in (None, gpus):
            yield (REPLICATE,), (f"`{REPLICATE}: {t.dp_replicate_size}` without FSDP: every "
                                 f"one of the job's {gpus} GPUs holds a whole replica (DDP); "
                                 f"set it to {gpus}, or add `fsdp_config` for HSDP")
        return
    try:
        dp_mesh.resolve(t.dp_shard_size, t.dp_replicate_size, gpus)
    except dp_mesh.MeshSizeError as exc:
        yield (key,), f"{exc} (launch: nodes x gpus_per_node = {gpus})"
