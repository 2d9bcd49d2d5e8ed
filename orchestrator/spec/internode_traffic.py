"""The per-parameter model of the bytes each node sends to the other nodes per optimizer step,
FSDP over every GPU against HSDP with one shard group per node, for a full fine-tune
(docs/sharded-training.md); orchestrator/spec/internode_table.py multiplies it out per layout
for the table `ft validate` prints.

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

from orchestrator.spec.internode_table import REDUCE_BYTES, Moved, out_of_each_node


@dataclass(frozen=True)
class Traffic:
    fsdp: float  # bytes per parameter out of each node per optimizer step
    hsdp: float


def bytes_per_parameter(nodes: int, gpus_per_node: int, *, gather_bytes: int,
                        gathers_per_micro_batch: int, micro_batches: int) -> Traffic:
    """A full fine-tune (every parameter trains) on `nodes` x `gpus_per_node` GPUs: the
    table's arithmetic (orchestrator/spec/internode_table.py) for one parameter."""
    one = Moved(gather_bytes, 0.0, REDUCE_BYTES, gathers_per_micro_batch, micro_batches)
    return Traffic(*(out_of_each_node(one, layout, nodes, gpus_per_node)
                     for layout in ("fsdp", "hsdp")))
