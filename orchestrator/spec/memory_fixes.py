"""What to change in a spec that does not fit its GPU (orchestrator/spec/memory_fit.py):
each suggestion is one key (or one pair that goes together) re-estimated, and listed only
when that change alone makes the estimate fit, with the peak it would have."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from trainer.torch_free.memory_estimate import GIB, Shape
from trainer.torch_free.training import TrainingConfig

MAX_NODES = 64


def fixes(shape: Shape, t: TrainingConfig, launch, total: int,
          evaluate: Callable) -> list[str]:
    """`evaluate(shape, t, world, total, optimistic)` -> Outcome (memory_fit.evaluate).
    The lines to print under the refusal, a heading first."""
    world = launch.nodes * launch.gpus_per_node

    def fits(changed: TrainingConfig, gpus: int = world) -> float | None:
        outcome = evaluate(shape, changed, gpus, total, True)
        return outcome.peak.total / GIB if outcome.fits else None

    found = [f"  {text} ({peak:.1f} GiB)" for text, peak in _candidates(t, world, launch, fits)
             if peak is not None]
    if found:
        return ["to fit, change one of these (each fits on its own):", *found]
    return ["no one change fits:", f"  {_combined(t, fits)}"]


def _combined(t: TrainingConfig, fits: Callable) -> str:
    """No single key is enough: the first of a ladder of changes, each on top of the last."""
    steps = [("`gradient_checkpointing: true`", {"gradient_checkpointing": True}),
             ("`micro_batch_size: 1`", {"micro_batch_size": 1}),
             ("`adapter: lora` with `lora_target_linear: true`",
              {"adapter": "lora", "lora_target_linear": True, "lora_r": 16}),
             ("`adapter: qlora` with `load_in_4bit: true`",
              {"adapter": "qlora", "load_in_4bit": True, "load_in_8bit": False})]
    update, said = {}, []
    for text, change in steps:
        if all(getattr(t, k) == v for k, v in change.items()):
            continue
        update.update(change)
        said.append(text)
        peak = fits(t.model_copy(update=update))
        if peak is not None:
            return f"together, {', '.join(said)} fit ({peak:.1f} GiB)"
    return ("nothing here fits one GPU of this size: a larger `launch.gpu`, or more GPUs "
            "with FSDP (`launch.nodes`, `launch.gpus_per_node`, `fsdp: [full_shard, "
            "auto_wrap]`)")


def _candidates(t: TrainingConfig, world: int, launch,
                fits: Callable) -> Iterator[tuple[str, float | None]]:
    def change(**update) -> TrainingConfig:
        return t.model_copy(update=update)

    if t.gradient_checkpointing is False:
        yield "`gradient_checkpointing: auto` (recompute only the layers that must be)", \
            fits(change(gradient_checkpointing="auto"))
    mbs = next((m for m in range(t.micro_batch_size - 1, 0, -1)
                if fits(change(micro_batch_size=m))), None)
    if mbs:
        yield (f"`micro_batch_size: {mbs}` (raise `gradient_accumulation_steps` to keep the "
               "batch)"), fits(change(micro_batch_size=mbs))
    seq = next((s for s in (8192, 4096, 2048, 1024, 512) if s < t.sequence_len and
                fits(change(sequence_len=s))), None)
    if seq:
        yield f"`sequence_len: {seq}`", fits(change(sequence_len=seq))
    if not t.adapter:
        yield "`adapter: lora` with `lora_target_linear: true`", \
            fits(change(adapter="lora", lora_target_linear=True, lora_r=16))
        if t.optimizer in ("adamw_torch", "adamw_torch_fused"):
            yield "`optimizer: adamw_torch_8bit` (8-bit optimizer state)", \
                fits(change(optimizer="adamw_torch_8bit"))
    elif not t.load_in_4bit:
        yield "`adapter: qlora` with `load_in_4bit: true`", \
            fits(change(adapter="qlora", load_in_4bit=True, load_in_8bit=False))
    yield from _more_gpus(t, world, launch, fits)


def _more_gpus(t: TrainingConfig, world: int, launch,
               fits: Callable) -> Iterator[tuple[str, float | None]]:
    """FSDP over the GPUs the spec has, else the fewest nodes that fit."""
    sharded = t if t.uses_fsdp else t.model_copy(update={"fsdp": ["full_shard", "auto_wrap"]})
    how = "" if t.uses_fsdp else " with FSDP (`fsdp: [full_shard, auto_wrap]`)"
    if not t.uses_fsdp and world > 1:
        yield f"shard over the {world} GPUs{how}", fits(sharded, world)
        if fits(sharded, world):
            return
    per_node = max(launch.gpus_per_node, 8)
    nodes = next((n for n in range(1, MAX_NODES + 1)
                  if n * per_node > world and fits(sharded, n * per_node)), None)
    if nodes:
        yield (f"`launch.nodes: {nodes}`, `launch.gpus_per_node: {per_node}`{how}",
               fits(sharded, nodes * per_node))
