"""Which data-parallel layout an FSDP spec trains with when it leaves the choice to ft: the
one decision `ft validate` / `ft launch` print and `ft train` applies, so they cannot
disagree (orchestrator/spec/layout_fit.py computes the memory answers it needs, from the
same inputs on both sides: the spec, the GPU count and the GPU's memory).

Two automatic steps, each only where the spec names no layout of its own:
- DDP for an adapter whose whole model fits each GPU (`fsdp_config.replicate_frozen_params:
  auto`, the default): nothing needs sharding then, and DDP's one all-reduce of the adapter
  gradients per step is the cheapest step (2x H100, bench/results/README.md 2026-11-26:
  FSDP2 with the base replicated 0.92x of one GPU per GPU, DDP 0.94x). An explicit
  `replicate_frozen_params: true` or `false` keeps FSDP2.
- HSDP on several nodes of several GPUs (no `dp_shard_size` / `dp_replicate_size`, no
  `sharding_strategy`): shard within a node, replicate across nodes, when one node's share
  of the weights fits its GPUs; only a gradient all-reduce then crosses the nodes
  (orchestrator/spec/internode_traffic.py has the bytes).

"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.torch_free import dp_mesh
from trainer.torch_free.training import TrainingConfig

DDP, HSDP, FSDP = "DDP", "HSDP", "FSDP2"


@dataclass(frozen=True)
class Fits:
    """The memory estimate's answers (None: not judged, e.g. no GPU memory figure).
    `whole`: the adapter model whole on each GPU fits, with no more layers recomputed than
    sharded. `node_shard`: the weights sharded over one node's GPUs fit. `judged_by`: the GPU
    memory the answers were judged against, for the printed line."""

    whole: bool | None = None
    node_shard: bool | None = None
    judged_by: str = ""
    whole_gib: float | None = None  # the whole adapter model's estimated peak per GPU
    # why the answers are None
    unjudged: str = "no GPU memory figure (`launch.gpu`, or the GPU `ft train` runs on)"


@dataclass(frozen=True)
class Layout:
    """`kind`: DDP, HSDP or FSDP2 (kept as the spec says); `line`: what was chosen, why, and
    how to choose otherwise."""

    kind: str
    line: str
    dp_shard_size: int | None = None


def replication_is_auto(t: TrainingConfig) -> bool:
    fc = t.fsdp_config
    return fc is None or fc.replicate_frozen_params == "auto"


def _words(t: TrainingConfig) -> list[str]:
    return [w.lower() for w in (t.fsdp if isinstance(t.fsdp, list) else (t.fsdp or "").split())]


def _strategy_named(t: TrainingConfig) -> bool:
    """A sharding strategy written in `fsdp_config` or Axolotl's `fsdp:` list (full_shard is
    the default and names no other layout)."""
    fc = t.fsdp_config
    if fc is not None and "sharding_strategy" in fc.model_fields_set:
        return fc.sharding_strategy != "FULL_SHARD"
    return any(w in ("shard_grad_op", "hybrid_shard", "no_shard") for w in _words(t))


def _offloads(t: TrainingConfig) -> bool:
    return bool(t.fsdp_config and t.fsdp_config.offload_params) or "offload" in _words(t)


def is_open(t: TrainingConfig) -> bool:
    """Whether the spec leaves the layout to ft: FSDP, no mesh sizes, no other strategy, no
    offloading (which needs FSDP's CPU copies)."""
    return t.uses_fsdp and not dp_mesh.asks_for_layout(t.dp_shard_size, t.dp_replicate_size) \
        and not _strategy_named(t) and not _offloads(t)


def choose_layout(t: TrainingConfig, nodes: int, gpus_per_node: int,
                  fits: Fits) -> Layout | None:
    """The layout for `nodes` x `gpus_per_node` GPUs; None where the spec has nothing to choose
    (no FSDP, one GPU, or a layout written out)."""
    if not is_open(t) or nodes * gpus_per_node < 2:
        return None
    by = f" ({fits.judged_by})" if fits.judged_by else ""
    why_not_ddp = ""
    if t.adapter and replication_is_auto(t):
        est = f", {fits.whole_gib:.1f} GiB estimated" if fits.whole_gib is not None else ""
        keep = ("`fsdp_config.replicate_frozen_params: true` keeps FSDP2 (base replicated, "
                "adapter sharded), `false` shards everything")
        if fits.whole:
            return Layout(DDP, f"layout: DDP, chosen by `replicate_frozen_params: auto`: the "
                          f"whole adapter model fits each GPU{est}{by}, so nothing is sharded and "
                          f"only the adapter's gradients are all-reduced{_ddp_note(t)}; {keep}")
        why_not_ddp = ("the whole adapter model needs more memory or more recomputed layers "
                       f"on each GPU than FSDP2{est}") if fits.whole is False \
            else f"not judged whether the whole adapter model fits each GPU: {fits.unjudged}"
    if nodes >= 2 and gpus_per_node >= 2:
        return _across_nodes(nodes, gpus_per_node, fits, by, why_not_ddp)
    if why_not_ddp:
        return Layout(FSDP, f"layout: FSDP2, no DDP: {why_not_ddp}{by}")
    return None


def _ddp_note(t: TrainingConfig) -> str:
    fc = t.fsdp_config
    if fc is not None and fc.cpu_ram_efficient_loading:
        return (" (`cpu_ram_efficient_loading` is FSDP's: under DDP every rank reads the "
                "weights)")
    return ""


def _across_nodes(nodes: int, per_node: int, fits: Fits, by: str, why_not_ddp: str) -> Layout:
    lead = f"{why_not_ddp}; " if why_not_ddp else ""
    explicit = (f"`dp_shard_size: {per_node}` sets HSDP, `dp_shard_size: {nodes * per_node}` "
                "full sharding")
    if fits.node_shard:
        return Layout(HSDP, f"layout: HSDP, automatic on {nodes} nodes: {lead}each weight is "
                      f"sharded over the {per_node} GPUs of a node and replicated across "
                      f"nodes, since one node's share fits{by}; only gradients cross the "
                      f"nodes; {explicit}", dp_shard_size=per_node)
    why = "one node's share of the weights does not fit its GPUs" if fits.node_shard is False \
        else f"not judged whether one node's share fits: {fits.unjudged}"
    return Layout(FSDP, f"layout: FSDP2 sharded over all {nodes * per_node} GPUs: {lead}{why}"
                  f"{by}, so no HSDP; {explicit}")


def apply_layout(t: TrainingConfig, layout: Layout | None) -> TrainingConfig:
    """The spec as it trains: DDP drops FSDP (its per-layer recompute becomes
    `gradient_checkpointing: true`), HSDP sets `dp_shard_size`; FSDP2 leaves it as it is."""
    if layout is None or layout.kind == FSDP:
        return t
    if layout.kind == HSDP:
        return t.model_copy(update={"dp_shard_size": layout.dp_shard_size})
    update: dict = {"fsdp": None, "fsdp_config": None}
    if t.fsdp_config is not None and t.fsdp_config.activation_checkpointing:
        update["gradient_checkpointing"] = True
    return t.model_copy(update=update)
