"""FSDP2 for ft: the one place that decides how a model is sharded and how it is gathered.

Order, per torch's FSDP2 recipe: (optionally) upcast trainable parameters to fp32 master
weights, `fully_shard` every decoder layer, then the root (which picks up embeddings, the
final norm, lm_head). With `cpu_ram_efficient_loading`, only global rank 0 reads the weights;
the others build the model on the meta device and receive their shards by broadcast, so a
node holds one host copy of the model instead of one per GPU.

QLoRA: bitsandbytes stores the packed 4-bit weights in the compute dtype (`quant_storage`),
so they are ordinary floating tensors to FSDP and shard like any other parameter; the
quantization state stays on each `Linear4bit` module, which bitsandbytes restores after the
all-gather. Each rank quantizes on its own device while loading (transformers streams the
checkpoint a shard file at a time), so host memory stays at one shard file per process.

An adapter's frozen base can stay whole on every rank (`replicate_frozen_params`, decided
for `auto` by trainer/models/activation_memory.py once the model is loaded): `fully_shard` then
ignores it, so no step all-gathers it, and only the trainable weights are sharded.

The model is wrapped before the Trainer sees it; accelerate recognises an FSDP2 module and
leaves the wrapping alone, but still runs its FSDP2 optimizer, clipping and checkpoint code.

`ShardingPlan` is the one statement of the spec's FSDP settings: the wrapping here, the
FSDP section of the TrainingArguments (`ShardingPlan.accelerate_fsdp`), activation
checkpointing and FtTrainer's save path all read it, never `fsdp_config` directly. Facts
about the job (ranks, processes per node) come in as a `trainer.distributed.world_ranks.WorldRanks`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from trainer.distributed.device_mesh import build_mesh
from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.fsdp")


STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD")


class ShardingError(UserError, ValueError):
    """The spec's FSDP settings do not fit the model (names `fsdp_config.<key>`)."""


@dataclass(frozen=True)
class ShardingPlan:
    layer_classes: tuple[str, ...]  # empty: take the model's own `_no_split_modules`
    reshard_after_forward: bool
    offload_params: bool
    cpu_ram_efficient_loading: bool
    param_dtype: torch.dtype | None  # compute dtype of the all-gathered weights
    # FULL_SHARD: shard over every rank. SHARD_GRAD_OP: keep gathered layers until backward
    # (more memory, one all-gather less per layer). HYBRID_SHARD: shard within a node,
    # replicate across nodes (HSDP: only gradient all-reduces cross the slower inter-node
    # links). NO_SHARD: replicate everywhere (DDP semantics, through the same code).
    strategy: str = "FULL_SHARD"
    # Per-decoder-layer recompute (`fsdp_config.activation_checkpointing`): transformers'
    # gradient checkpointing does it, so accelerate must not add its own.
    activation_checkpointing: bool = False
    # Frozen weights (an adapter's base) kept whole on every rank, outside FSDP: no step
    # all-gathers them, only the trainable weights are sharded. None: `auto`, settled by
    # `settle_replication` once the model is loaded and its memory can be estimated.
    replicate_frozen: bool | None = False
    # Axolotl's `dp_shard_size` / `dp_replicate_size` (None: unset): the 2-D HSDP mesh,
    # resolved against the world size by trainer/distributed/device_mesh.py.
    dp_shard_size: int | None = None
    dp_replicate_size: int | None = None

    @property
    def reshard_layers(self) -> bool:
        """Free each layer's gathered weights after its forward (SHARD_GRAD_OP keeps them)."""
        return self.reshard_after_forward and self.strategy != "SHARD_GRAD_OP"

    def accelerate_fsdp_config(self) -> dict:
        """TrainingArguments' `fsdp_config` (with `fsdp=True`) for a model that
        `shard_model` wrapped.

        accelerate leaves an FSDP2 module's wrapping alone; it still owns the optimizer,
        gradient clipping and checkpoint files. Checkpoints are always sharded (each rank
        writes its own shards: no whole-model gather on rank 0 per save); the final model
        is saved whole by FtTrainer (a full fine-tune's a tensor at a time:
        trainer/distributed/sharded_export.py). NO_WRAP: the layers are wrapped already, under FSDP
        class names accelerate's transformer policy would look for in vain. Its own
        activation checkpointing stays off: transformers' per-layer one does it.
        """
        return {"version": 2, "state_dict_type": "SHARDED_STATE_DICT",
                "auto_wrap_policy": "NO_WRAP", "reshard_after_forward": self.reshard_layers,
                "cpu_offload": self.offload_params, "cpu_ram_efficient_loading": False,
                "activation_checkpointing": False}


def require_runnable_here(plan: ShardingPlan | None) -> None:
    """Offloading moves parameters from GPU to CPU memory; without a GPU torch fails deep
    inside fully_shard, so a CPU run with it is refused up front."""
    if plan is not None and plan.offload_params and not torch.cuda.is_available():
        raise UserError("`fsdp_config.offload_params` moves sharded parameters from GPU to "
                        "CPU memory, and this machine has no GPU (they are in CPU memory "
                        "already); remove it for a CPU run")


def plan_for(cfg: TrainingConfig, compute_dtype: torch.dtype) -> ShardingPlan | None:
    """The sharding the spec asks for, or None when it does not use FSDP."""
    if not cfg.uses_fsdp:
        return None
    fc = cfg.fsdp_config
    layers = fc.transformer_layer_cls_to_wrap if fc else None
    quantized = cfg.load_in_4bit
    # Gathering in the compute dtype halves the all-gather traffic against fp32, and 4-bit
    # storage (bf16) mixed with fp32 norms/adapters has no single dtype FSDP could gather
    # otherwise (a 4-bit model computes in bf16 even on a CPU: trainer.models.load.compute_dtype).
    param_dtype = compute_dtype if compute_dtype != torch.float32 else None
    # Axolotl's `fsdp:` list may carry the strategy and offload (`[shard_grad_op, offload]`);
    # `fsdp_config` wins where it says so explicitly.
    words = _fsdp_words(cfg)
    offload = offloads_params(cfg)
    listed = next((w.upper() for w in words if w.upper() in STRATEGIES), "FULL_SHARD")
    strategy = fc.sharding_strategy if fc and "sharding_strategy" in fc.model_fields_set \
        else listed
    return ShardingPlan(
        layer_classes=tuple([layers] if isinstance(layers, str) else layers or ()),
        reshard_after_forward=fc.reshard_after_forward if fc else True,
        offload_params=offload,
        # Quantization happens while loading, on each rank's own device: nothing to broadcast.
        cpu_ram_efficient_loading=bool(fc and fc.cpu_ram_efficient_loading) and not quantized,
        param_dtype=param_dtype,
        strategy=strategy,
        activation_checkpointing=bool(fc and fc.activation_checkpointing),
        replicate_frozen=_replication_wish(cfg, offload),
        dp_shard_size=cfg.dp_shard_size,
        dp_replicate_size=cfg.dp_replicate_size,
    )


def _fsdp_words(cfg: TrainingConfig) -> list[str]:
    return [w.lower() for w in (cfg.fsdp if isinstance(cfg.fsdp, list)
                                else (cfg.fsdp or "").split())]


def offloads_params(cfg: TrainingConfig) -> bool:
    """`fsdp_config.offload_params`, or `offload` in Axolotl's `fsdp:` list."""
    return cfg.uses_fsdp and (bool(cfg.fsdp_config and cfg.fsdp_config.offload_params)
                              or "offload" in _fsdp_words(cfg))


def _replication_wish(cfg: TrainingConfig, offload: bool) -> bool | None:
    """`fsdp_config.replicate_frozen_params`: True/False as written; `auto` (None) only
    where something is frozen and nothing is offloaded (orchestrator/spec/rules.py refuses
    an explicit true in those cases)."""
    wish = cfg.fsdp_config.replicate_frozen_params if cfg.fsdp_config else "auto"
    if wish != "auto":
        return wish
    return None if cfg.adapter and not offload else False


def settle_replication(plan: ShardingPlan, fits_replicated: bool | None) -> ShardingPlan:
    """Decide `auto` from the memory estimate (None: no estimate, e.g. on a CPU: shard)."""
    if plan.replicate_frozen is not None:
        return plan
    return replace(plan, replicate_frozen=bool(fits_replicated))


def loads_on_meta(plan: ShardingPlan | None, world: WorldRanks) -> bool:
    """Ranks other than 0 skip reading the weights; rank 0 broadcasts them after sharding."""
    return plan is not None and plan.cpu_ram_efficient_loading and not world.is_main


def decoder_layers(model: nn.Module, class_names: tuple[str, ...]) -> list[nn.Module]:
    """The modules to shard one by one: the named classes, else the model's own
    `_no_split_modules` (the decoder layer for every transformers LM)."""
    names = set(class_names) or set(_no_split_modules(model))
    if not names:
        raise ShardingError("cannot tell the decoder layer class of this model; set "
                         "`fsdp_config.transformer_layer_cls_to_wrap` (e.g. LlamaDecoderLayer)")
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        found = sorted({type(m).__name__ for m in model.modules() if "Layer" in type(m).__name__})
        raise ShardingError(f"`fsdp_config.transformer_layer_cls_to_wrap` names {sorted(names)}, "
                         f"which this model does not have; its layer classes: {found}")
    return layers


def _no_split_modules(model: nn.Module) -> list[str]:
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            return list(names)
    return []


def shard_model(model: nn.Module, plan: ShardingPlan, device: torch.device,
                world: WorldRanks) -> nn.Module:
    """Wrap `model` in place with FSDP2 and fill its shards; returns the same object.

    On a meta-initialised rank, `model` has no weights yet: rank 0's full state dict is
    broadcast into every rank's shards after wrapping.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    if plan.param_dtype is not None:
        _upcast_trainable(model)
    replicated = _frozen(model) if plan.replicate_frozen else set()
    full_state = None
    if plan.cpu_ram_efficient_loading:
        full_state = model.state_dict() if world.is_main else {}
        if world.is_main:
            _params_to_meta(model)  # rank 0 keeps its host copy in `full_state` only
            if plan.replicate_frozen:  # the meta stand-ins are what fully_shard sees
                replicated = _frozen(model)
    else:
        for param in replicated:  # fully_shard moves only what it manages to the device
            param.data = param.data.to(device)
    mesh = build_mesh(device, plan.strategy, world, plan.dp_shard_size, plan.dp_replicate_size)
    kwargs = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=plan.param_dtype,
                                          reduce_dtype=torch.float32),
        "offload_policy": CPUOffloadPolicy() if plan.offload_params else None,
        "ignored_params": replicated or None,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    layers = decoder_layers(model, plan.layer_classes)
    layer_class = type(layers[0]).__name__
    for layer in layers:
        fully_shard(layer, reshard_after_forward=plan.reshard_layers, **kwargs)
    # The root holds embeddings, final norm and lm_head, used first and last in a step:
    # resharding it after forward would only be gathered again at once for backward.
    fully_shard(model, reshard_after_forward=False, **kwargs)
    if plan.cpu_ram_efficient_loading:
        set_model_state_dict(model, full_state, options=StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True,
            cpu_offload=plan.offload_params))
        del full_state
        _retie(model)
    log.info("FSDP2 %s: %d %s layers sharded over %d ranks (%s, mesh %s), gather dtype %s%s%s",
             plan.strategy, len(layers), layer_class, world.world_size, mesh.device_type,
             "x".join(map(str, mesh.shape)),
             plan.param_dtype or "as stored", ", params offloaded to CPU"
             if plan.offload_params else "", _replicated_note(model, plan))
    return model


def _frozen(model: nn.Module) -> set[nn.Parameter]:
    return {p for p in model.parameters() if not p.requires_grad}


def _replicated_note(model: nn.Module, plan: ShardingPlan) -> str:
    if not plan.replicate_frozen:
        return ""
    size = sum(p.numel() * p.element_size() for p in _frozen(model))
    return f"; frozen weights replicated on every rank ({size / 2**30:.2f} GiB each), " \
        "only the trainable ones sharded"


def _upcast_trainable(model: nn.Module) -> None:
    """fp32 master weights for whatever trains: the optimizer step in bf16 loses small
    updates. Compute still runs in the gather dtype (MixedPrecisionPolicy)."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def _params_to_meta(model: nn.Module) -> None:
    """Drop rank 0's weights (they live on in its full state dict) so that sharding does not
    first move the whole model onto one GPU. Buffers stay: non-persistent ones such as the
    rotary frequencies are not in the state dict. Tied parameters stay tied."""
    moved: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in moved:
                moved[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"),
                                                requires_grad=param.requires_grad)
            setattr(module, name, moved[id(param)])


def _retie(model: nn.Module) -> None:
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()


def gather_state_dict(model: nn.Module, trainable_only: bool,
                      rank: int) -> dict[str, torch.Tensor]:
    """Full (unsharded) tensors on CPU; every rank must call it, rank 0 gets the values.

    For an adapter only the trainable parameters are gathered: the frozen (possibly 4-bit)
    base never leaves its shards, and each saved lora_A/lora_B has its full shape.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.tensor import DTensor

    if not trainable_only:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                    cpu_offload=True))
    out = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        full = param.full_tensor() if isinstance(param, DTensor) else param.detach()
        if rank == 0:
            out[name] = full.detach().cpu()
    return out
