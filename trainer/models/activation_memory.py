"""`gradient_checkpointing: auto` (the default): recompute only as many decoder layers as
the GPU's memory needs.

Recomputing a layer in backward costs a third of its FLOPs (forward again), so a layer is
checkpointed only when its activations do not fit. The arithmetic (static, kept and
recomputed layers, logits, budget) is trainer/torch_free/memory_estimate.py, shared with
`ft validate`; here it gets the loaded model's real parameter sizes and the GPU's memory.
The first k layers are checkpointed, k the smallest that fits: backward reaches them last,
when the kept layers' activations are already freed, so their recompute needs no extra room.

Measured on H100 (bench/results/2026-11-26-h100.jsonl, ANCHORS.md), 8192 tokens, 32 layers of
Llama-3.1-8B, no recompute: ft + Liger with peft's LoRA forward 58.56 GiB peak on 15.6 GiB
static -> 172 KiB per token and layer, 2 x (7 hidden + 4 intermediate); transformers' own
RMSNorm keeps fp32 copies: +16 x hidden (80.4 GiB without Liger); peft's forward on a 4-bit
model keeps fp32 copies of the adapted inputs: +16 x hidden (67.26 GiB, 7.8 static -> 232
KiB). The lean LoRA forward keeps no second copy of the adapted projections' inputs:
2 x (4 hidden + 4 intermediate) = 144 KiB (measured 135-138 on full rows for LoRA and QLoRA,
150 on packed rows with flex attention). A backward pass also holds one layer's MLP
gradients: tokens x (6 intermediate + 4 hidden) bytes on top (a 16384-token batch that the
estimate without it put at 69.5 GiB ran out of 79 GiB).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace

from trainer.torch_free.activation_offloading import LAYER_INPUTS, offload_mode
from trainer.torch_free.dp_mesh import shard_group_size
from trainer.torch_free.memory_estimate import (  # noqa: F401  (the names tests import here)
    GIB,
    HEADROOM,
    LOGIT_BYTES,
    RESERVED,
    Estimate,
    Shape,
    backward_transient_bytes,
    fits,
    layers_to_checkpoint,
    per_token_layer_bytes,
    replication_pays,
    shape_from_config,
    trainable_bytes,
)

log = logging.getLogger("ft.memory")


def shape_of(config) -> Shape | None:
    text = getattr(config, "get_text_config", lambda: config)()
    return shape_from_config(text.to_dict())


def full_checkpointing(cfg) -> bool:
    """Every layer recomputed through the Trainer: `gradient_checkpointing: true`, or
    `fsdp_config.activation_checkpointing`, or activation offloading of the layer inputs
    (offloading everything saved replaces recompute). `auto` is planned here."""
    fsdp = bool(cfg.fsdp_config and cfg.fsdp_config.activation_checkpointing)
    mode = offload_mode(cfg)
    if mode is not None:
        return mode == LAYER_INPUTS or fsdp
    return cfg.gradient_checkpointing not in (False, "auto") or fsdp


def static_bytes(model, world_size: int, replicated_frozen: bool = False,
                 optimizer: str = "adamw_torch", fp32_master: bool = False) -> int:
    """What the parameters occupy on one GPU (sharded over the world under FSDP/ZeRO; the
    frozen ones whole on every GPU with `replicated_frozen`, see trainer/distributed/fsdp.py).
    A trainable parameter adds its gradient and optimizer state (`fp32_master`: FSDP upcasts
    what trains to fp32, ZeRO keeps an fp32 copy). `ds_numel`: a ZeRO-3 parameter's real
    size (its tensor is an empty placeholder)."""
    frozen = trained = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", p.numel())
        if p.requires_grad:
            size = max(p.element_size(), 4) if fp32_master else p.element_size()
            trained += n * trainable_bytes(size, optimizer)
        else:
            frozen += n * p.element_size()
    world = max(world_size, 1)
    return int((frozen if replicated_frozen else frozen // world) + trained // world)


def decoder_layers(model) -> list:
    """The modules transformers checkpoints (GradientCheckpointingLayer), in model order."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def plan_checkpointing(model, cfg, *, fused_loss: bool, fused_norm: bool,
                       lean_lora: bool = False, replicated_frozen: bool = False) -> int | None:
    """Apply `auto`: checkpoint the first k decoder layers. With `true`, only say when the
    estimate finds that fewer would fit. Returns k, or None when nothing was estimated."""
    # Offloaded activations leave the GPU, so the estimate would plan for memory they free.
    auto = cfg.gradient_checkpointing == "auto" and not full_checkpointing(cfg) and \
        offload_mode(cfg) is None
    if not (auto or full_checkpointing(cfg)):
        return None
    k = estimate_layers(model, cfg, kernel_kinds(cfg, fused_loss, fused_norm, lean_lora),
                        replicated_frozen)
    if k is None:
        return None
    layers = decoder_layers(model)
    if not auto:
        if k < len(layers):
            log.info("gradient_checkpointing: true recomputes all %d layers; the memory "
                     "estimate says %d would fit (`gradient_checkpointing: auto` is faster)",
                     len(layers), k)
        return k
    if k:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=cfg.gradient_checkpointing_kwargs
            or {"use_reentrant": False})
        for layer in layers[k:]:
            layer.gradient_checkpointing = False
    log.info("gradient_checkpointing auto: %d of %d decoder layers recomputed", k, len(layers))
    return k


def kernel_kinds(cfg, fused_loss: bool, fused_norm: bool, lean_lora: bool) -> Estimate:
    """The kernel choices of an estimate; its byte and token counts are filled in later."""
    return Estimate(0, 0, cfg.load_in_4bit, fused_loss, fused_norm, lean_lora)


@dataclass(frozen=True)
class _Context:
    shape: Shape
    total_bytes: int
    tokens: int
    world: int
    training: tuple[str, bool]  # static_bytes' optimizer and fp32_master


def _context(model, cfg) -> _Context | None:
    """What every estimate needs; None without a GPU or a recognisable decoder stack."""
    import torch

    shape = shape_of(model.config)
    if not torch.cuda.is_available() or shape is None or \
            len(decoder_layers(model)) != shape.layers:
        return None
    sharded = cfg.uses_fsdp or bool(cfg.deepspeed)
    world = int(os.environ.get("WORLD_SIZE", "1")) if sharded else 1
    if cfg.uses_fsdp:  # HSDP: the weights are split over one shard group, not every rank
        world = shard_group_size(cfg.dp_shard_size, cfg.dp_replicate_size, world)
    total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    return _Context(shape, total, cfg.micro_batch_size * cfg.sequence_len, world,
                    (cfg.optimizer, sharded))


def estimate_layers(model, cfg, kinds: Estimate, replicated_frozen: bool = False) -> int | None:
    """`kinds`: the kernel choices; its byte and token counts are filled in here."""
    ctx = _context(model, cfg)
    if ctx is None:
        return None
    est = replace(kinds, tokens=ctx.tokens, static_bytes=static_bytes(
        model, ctx.world, replicated_frozen, *ctx.training))
    k = layers_to_checkpoint(ctx.shape, est, ctx.total_bytes)
    log.info("activation memory estimate: %.1f GiB GPU, %.1f GiB static%s, %d tokens per "
             "micro-batch, %s loss -> %d of %d layers to recompute", ctx.total_bytes / GIB,
             est.static_bytes / GIB, " (frozen weights replicated)" if replicated_frozen
             else "", ctx.tokens, "fused" if est.fused_loss else "plain", k, ctx.shape.layers)
    return k


def replication_fits(model, cfg, kinds: Estimate) -> bool | None:
    """`fsdp_config.replicate_frozen_params: auto`: keep the frozen weights whole on every
    GPU when that fits and needs no more recomputed layers than sharding them (a recomputed
    layer costs a third of its FLOPs, more than the all-gathers replication saves). None:
    no estimate here (a CPU run)."""
    ctx = _context(model, cfg)
    if ctx is None:
        return None
    sharded, whole = (replace(kinds, tokens=ctx.tokens, static_bytes=static_bytes(
        model, ctx.world, rep, *ctx.training)) for rep in (False, True))
    pays = replication_pays(ctx.shape, sharded, whole, ctx.total_bytes)
    log.info("replicate_frozen_params auto: %s (%.1f GiB static per GPU replicated, %.1f "
             "sharded)", "replicate" if pays else "shard", whole.static_bytes / GIB,
             sharded.static_bytes / GIB)
    return pays

