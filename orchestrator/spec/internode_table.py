"""Inter-node bytes per optimizer step out of each node, in GB, for 2, 4, 8 and 16 nodes (and
the spec's own count), for each layout that applies to the spec: what `ft validate` prints
for a multi-node job. It extends orchestrator/spec/internode_traffic.py's per-parameter ring
model of a full fine-tune to real bytes (the model's parameter count, from
orchestrator/spec/model_shapes.py) and to adapters, whose frozen base moves only where FSDP
shards it across nodes.
docs/sharded-training.md has the arithmetic and its assumptions.

With W = N x G GPUs on N nodes, ring factor r = (W-1)/W, m micro-batches per step and g
all-gathers of each weight per micro-batch (2 when layers reshard after forward):
- FSDP over all GPUs: r x (m g x weights as gathered + trainable gradients in fp32);
- FSDP with the adapter's base replicated: the same with only the adapter gathered;
- HSDP (one shard group per node): 2 (N-1)/N x trainable gradients in fp32;
- DDP: a ring all-reduce over every GPU, 2 (W-1)/W x trainable gradients in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.spec.memory_fit import setup_of
from trainer.torch_free.memory_estimate import (
    NF4_BYTES,
    Shape,
    count_params,
    lora_params,
)
from trainer.torch_free.training import TrainingConfig

NODE_COUNTS = (2, 4, 8, 16)
GB = 1e9
REDUCE_BYTES = 4  # ft reduces gradients in fp32 (trainer/distributed/fsdp.py)


@dataclass(frozen=True)
class Moved:
    """What one optimizer step moves, in bytes, before the ring factors: the weights as one
    all-gather carries them (`gathered`: the frozen base, `adapter`: what trains, when it
    is not the whole model) and the trainable gradients as reduced (fp32)."""

    gathered: float  # every weight, one all-gather (a full fine-tune: the whole model)
    adapter_gathered: float  # the adapter's weights, one all-gather (0 for a full fine-tune)
    gradients: float
    gathers: int  # all-gathers per micro-batch
    micro_batches: int


def _gather_bytes(t: TrainingConfig) -> int:
    """FSDP gathers in the compute dtype (trainer/distributed/fsdp.py)."""
    return 4 if t.bf16 is False and not t.fp16 else 2


def _rounds(t: TrainingConfig) -> dict[str, int]:
    """All-gathers per micro-batch (a second one for backward when layers reshard after
    forward) and micro-batches per optimizer step (the gradients are reduced once)."""
    fc = t.fsdp_config
    resharded = (fc.reshard_after_forward if fc else True) and not (
        fc and fc.sharding_strategy == "SHARD_GRAD_OP")
    return {"gathers": 2 if resharded else 1, "micro_batches": t.gradient_accumulation_steps}


def moved(t: TrainingConfig, shape: Shape) -> Moved:
    """The volumes for `t` on a model of `shape`."""
    gather_bytes = _gather_bytes(t)
    params = count_params(shape)
    common = _rounds(t)
    if not t.adapter:
        return Moved(params.total * gather_bytes, 0.0, params.total * REDUCE_BYTES, **common)
    setup = setup_of(t, 1)
    lora = lora_params(shape, setup.lora_r, setup.lora_targets, setup.expert_targets)
    # The frozen base goes over the wire as stored: 4-bit weights are packed into bf16
    # storage (their quantization state stays on each module, never gathered).
    quant = NF4_BYTES if t.load_in_4bit else gather_bytes
    experts = quant if t.quantize_moe_experts and t.load_in_4bit else gather_bytes
    base = params.linear * quant + params.experts * experts + params.other * gather_bytes
    adapter = lora * gather_bytes
    return Moved(base + adapter, adapter, lora * REDUCE_BYTES, **common)


def out_of_each_node(m: Moved, layout: str, nodes: int, gpus_per_node: int) -> float:
    """Bytes per optimizer step out of each node for `layout` (one of LAYOUTS)."""
    if nodes < 2:
        return 0.0
    world = nodes * gpus_per_node
    ring = (world - 1) / world
    per_step = m.micro_batches * m.gathers
    if layout == "fsdp":
        return ring * (per_step * m.gathered + m.gradients)
    if layout == "fsdp_replicated":
        return ring * (per_step * m.adapter_gathered + m.gradients)
    if layout == "hsdp":
        return 2 * (nodes - 1) / nodes * m.gradients
    if layout == "ddp":
        return 2 * ring * m.gradients
    raise ValueError(layout)


LAYOUTS = {"fsdp": "FSDP over all GPUs", "fsdp_replicated": "FSDP2, base replicated",
           "hsdp": "HSDP, shard in node", "ddp": "DDP"}


def layouts_for(t: TrainingConfig, gpus_per_node: int) -> list[str]:
    """The layouts this spec may train with on several nodes."""
    if not t.uses_fsdp:
        return ["ddp"] if t.adapter else []
    rows = ["fsdp"]
    if t.adapter:
        rows.append("fsdp_replicated")
    if gpus_per_node >= 2:
        rows.append("hsdp")
    if t.adapter:
        rows.append("ddp")
    return rows


def per_parameter(t: TrainingConfig) -> Moved:
    """The volumes per trainable parameter, for a model whose shape is unknown: the whole
    model for a full fine-tune; for an adapter only its own parameters (so the layouts that
    gather the frozen base cannot be counted)."""
    if t.adapter:
        return Moved(0.0, 0.0, REDUCE_BYTES, **_rounds(t))
    return Moved(_gather_bytes(t), 0.0, REDUCE_BYTES, **_rounds(t))


def _gb(value: float) -> str:
    gb = value / GB
    return f"{gb:.1f}" if gb >= 10 else f"{gb:.2f}" if gb >= 0.1 else f"{gb:.3f}"


def table(t: TrainingConfig, shape: Shape | None, nodes: int, gpus_per_node: int) -> list[str]:
    """The table's lines, in GB per optimizer step; with `shape` None, in bytes per trainable
    parameter, and for an adapter only the layouts that move its parameters alone. Empty
    where no layout applies."""
    rows = layouts_for(t, gpus_per_node)
    if shape is None and t.adapter:
        rows = [row for row in rows if row in ("hsdp", "ddp")]
    if not rows:
        return []
    counts = sorted({*NODE_COUNTS, nodes})
    m = moved(t, shape) if shape is not None else per_parameter(t)
    show = _gb if shape is not None else (lambda value: f"{value:.2f}")
    width = max(len(label) for label in LAYOUTS.values()) + 2
    head = f"{'nodes x ' + str(gpus_per_node) + ' GPUs':<{width}}" + \
        "".join(f"{n:>8}" for n in counts)
    lines = [head]
    for row in rows:
        lines.append(f"{LAYOUTS[row]:<{width}}" + "".join(
            f"{show(out_of_each_node(m, row, n, gpus_per_node)):>8}" for n in counts))
    return lines
