"""An analytic estimate of the bytes each node sends to the other nodes per optimizer step,
FSDP over every GPU against HSDP with one shard group per node, for `ft validate` to print
on a multi-node full fine-tune (the choice `dp_shard_size` makes; docs/sharded-training.md).

The model: NCCL's ring collectives, ranks numbered node by node (as torchrun does).
- A ring all-gather or reduce-scatter of S bytes over W ranks moves (W-1)/W x S over every
  edge of the ring, and the ring leaves each node once: (W-1)/W x S out of each node.
- FSDP over all N x G GPUs: every micro-batch all-gathers the weights (in the gather dtype)
  once for forward and, when layers are resharded after forward, again for backward; the
  gradients are reduce-scattered in fp32 once per optimizer step (accelerate skips the
  reduction on the other micro-batches of an accumulation window).
- HSDP with `dp_shard_size` = G: gathers and reduce-scatters stay inside the node; the fp32
  gradient shards are all-reduced across the N replicas, G rings of N ranks, each rank
  sending 2 (N-1)/N of its shard: 2 (N-1)/N x the gradients out of each node.
Figures are per parameter of the model, so they scale with any model size; the root
module's weights (not resharded) and latency are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.torch_free.training import TrainingConfig

REDUCE_BYTES = 4  # ft reduces gradients in fp32 (trainer/distributed/fsdp.py)


@dataclass(frozen=True)
class Traffic:
    fsdp: float  # bytes per parameter out of each node per optimizer step
    hsdp: float


def bytes_per_parameter(nodes: int, gpus_per_node: int, *, gather_bytes: int,
                        gathers_per_micro_batch: int, micro_batches: int) -> Traffic:
    """A full fine-tune (every parameter trains) on `nodes` x `gpus_per_node` GPUs."""
    if nodes < 2:
        return Traffic(0.0, 0.0)
    world = nodes * gpus_per_node
    ring = (world - 1) / world
    fsdp = micro_batches * gathers_per_micro_batch * ring * gather_bytes + ring * REDUCE_BYTES
    hsdp = 2 * (nodes - 1) / nodes * REDUCE_BYTES
    return Traffic(fsdp, hsdp)


def traffic_note(t: TrainingConfig, nodes: int, gpus_per_node: int) -> str | None:
    """One line for a multi-node FSDP full fine-tune with several GPUs per node, else None
    (an adapter's traffic depends on what is replicated, decided when the model loads)."""
    if not t.uses_fsdp or t.adapter or nodes < 2 or gpus_per_node < 2:
        return None
    fc = t.fsdp_config
    resharded = (fc.reshard_after_forward if fc else True) and not (
        fc and fc.sharding_strategy == "SHARD_GRAD_OP")
    gather_bytes = 4 if t.bf16 is False and not t.fp16 else 2
    traffic = bytes_per_parameter(nodes, gpus_per_node, gather_bytes=gather_bytes,
                                  gathers_per_micro_batch=2 if resharded else 1,
                                  micro_batches=t.gradient_accumulation_steps)
    return (f"inter-node traffic per optimizer step, out of each node (NCCL ring estimate, "
            f"bytes per model parameter): FSDP over all {nodes * gpus_per_node} GPUs "
            f"{traffic.fsdp:.2f}, HSDP with `dp_shard_size: {gpus_per_node}` {traffic.hsdp:.2f}")
