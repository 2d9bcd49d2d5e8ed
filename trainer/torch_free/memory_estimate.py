"""Peak GPU memory of one training rank, from the model's shape and the spec's choices: the
one arithmetic both sides use. The trainer plans `gradient_checkpointing: auto` with it
(trainer/models/activation_memory.py, which counts the loaded model's real parameters);
`ft validate` / `ft launch` print it before anything queues and refuse a spec that cannot
fit (orchestrator/spec/memory_fit.py, which counts the parameters from the shape).

Per GPU, in bytes (tokens = micro_batch_size x sequence_len, the most a batch holds):

    static     = weights as stored (bf16; 4-bit packed + absmax; / shards under FSDP or
                 ZeRO-3) + per trainable parameter its gradient and optimizer state
                 (trainable_bytes)
    transient  = one layer's MLP gradients in backward: tokens x (6 mlp + 4 hidden)
    logits     = tokens x vocab x 10 (bf16 logits, their fp32 copy in the loss, the fp32
                 gradient) unless a fused loss (Liger, cut-cross-entropy) never stores them
    kept       = tokens x per_token_layer_bytes for a layer whose activations stay
    ckpt       = tokens x hidden x 2 for a recomputed layer (its bf16 input); the layer
                 backward recomputes holds its kept activations meanwhile
    budget     = HEADROOM x GPU memory - RESERVED

Fitted to H100 measurements (bench/results/2026-11-26-*.jsonl, ../shared/bench/ANCHORS.md;
the table in tests/test_memory_estimate.py holds each figure and the estimate's error).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
HEADROOM = 0.90  # allocator fragmentation, cuBLAS/NCCL workspaces, the CUDA context
RESERVED = 1 * GIB
LOGIT_BYTES = 10
# bitsandbytes 4-bit: half a byte per weight, plus an absmax per block of 64 (fp32, or
# 8-bit with one fp32 per 256 blocks when double-quantized)
NF4_BYTES = 0.5
NF4_ABSMAX = {True: (1 + 4 / 256) / 64, False: 4 / 64}


@dataclass(frozen=True)
class Shape:
    """A decoder-only model's dimensions. heads 0: unknown (attention taken as 4 x hidden^2).
    experts > 0: a mixture of experts, `active` of them per token, each `expert_intermediate`
    wide, plus `shared_intermediate` of always-on shared experts."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    experts: int = 0
    active_experts: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0
    tied_embeddings: bool = False

    @property
    def mlp_width(self) -> int:
        """The MLP width one token passes through (its activations scale with it)."""
        if not self.experts:
            return self.intermediate
        return self.active_experts * self.expert_intermediate + self.shared_intermediate


def _first(config: dict, *keys: str, default=None):
    return next((config[k] for k in keys if config.get(k) is not None), default)


def shape_from_config(config: dict) -> Shape | None:
    """A transformers config.json (as a dict; a multimodal one's `text_config`), or None when
    it lacks the decoder's dimensions."""
    config = {**config, **(config.get("text_config") or {})}
    try:
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError):
        return None
    heads = int(_first(config, "num_attention_heads", default=0))
    experts = int(_first(config, "num_local_experts", "num_experts", "n_routed_experts",
                         default=0))
    intermediate = _first(config, "intermediate_size", "ffn_dim", default=None)
    expert_width = int(_first(config, "moe_intermediate_size", default=intermediate or 0))
    shared = int(_first(config, "shared_expert_intermediate_size", default=0)) or \
        int(_first(config, "n_shared_experts", default=0)) * expert_width
    if intermediate is None and not experts:
        return None
    return Shape(
        layers, hidden, int(intermediate or expert_width), vocab, heads=heads,
        kv_heads=int(_first(config, "num_key_value_heads", default=heads)),
        head_dim=int(_first(config, "head_dim", default=hidden // heads if heads else 0)),
        experts=experts, active_experts=int(_first(config, "num_experts_per_tok",
                                                   "moe_topk", default=0)) if experts else 0,
        expert_intermediate=expert_width if experts else 0,
        shared_intermediate=shared if experts else 0,
        tied_embeddings=bool(config.get("tie_word_embeddings", False)))


# ---- parameters --------------------------------------------------------------------------

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_dims(shape: Shape) -> dict[str, tuple[int, int]]:
    """(in, out) of each linear projection of one decoder layer (the dense or shared MLP)."""
    h = shape.hidden
    q = shape.heads * shape.head_dim if shape.heads else h
    kv = shape.kv_heads * shape.head_dim if shape.heads else h
    mlp = shape.shared_intermediate if shape.experts else shape.intermediate
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, mlp), "up_proj": (h, mlp), "down_proj": (mlp, h)}


@dataclass(frozen=True)
class Params:
    """Parameter counts by kind: `linear` (the decoder layers' projections: what 4-bit and
    8-bit loading quantize), `experts` (routed experts' fused weights), `other` (embeddings,
    output head, norms, routers: kept in bf16)."""

    linear: int
    experts: int
    other: int

    @property
    def total(self) -> int:
        return self.linear + self.experts + self.other


def count_params(shape: Shape) -> Params:
    h = shape.hidden
    linear = sum(i * o for i, o in projection_dims(shape).values()) * shape.layers
    experts = shape.layers * shape.experts * 3 * h * shape.expert_intermediate
    routers = shape.layers * shape.experts * h
    embeddings = shape.vocab * h * (1 if shape.tied_embeddings else 2)
    norms = (2 * shape.layers + 1) * h
    return Params(linear, experts, embeddings + routers + norms)


def lora_params(shape: Shape, r: int, targets: tuple[str, ...],
                expert_targets: tuple[str, ...] = ()) -> int:
    """Adapter parameters: r x (in + out) per targeted projection per layer; on a MoE's
    fused experts (`lora_target_parameters`), per expert."""
    dims = projection_dims(shape)
    per_layer = sum(r * sum(dims[name]) for name in targets if name in dims)
    h, e = shape.hidden, shape.expert_intermediate
    fused = {"gate_up_proj": h + 2 * e, "down_proj": e + h}
    per_layer += sum(shape.experts * r * width for name, width in fused.items()
                     if any(t.endswith(name) for t in expert_targets))
    return per_layer * shape.layers


# ---- optimizer ---------------------------------------------------------------------------

# Bytes of optimizer state per trainable parameter, as a multiple of the parameter's own
# size (torch's optimizers keep their state in the parameter's dtype) or fixed (bitsandbytes'
# and torchao's low-bit states; bitsandbytes' 32-bit ones are fp32 whatever the parameter).
_STATES_LIKE_PARAM = {"adamw_torch": 2, "adamw_torch_fused": 2, "adamw_hf": 2, "adagrad": 1,
                      "rmsprop": 1, "sgd": 0, "adafactor": 0}
_STATES_FIXED = {"adamw_torch_8bit": 2, "adamw_torch_4bit": 1, "ao_adamw_8bit": 2,
                 "ao_adamw_4bit": 1, "adamw_bnb_8bit": 2, "adamw_8bit": 2,
                 "paged_adamw_8bit": 2, "paged_adamw_32bit": 8, "ademamix": 12,
                 "paged_ademamix_32bit": 12, "ademamix_8bit": 3, "paged_ademamix_8bit": 3,
                 "lion_8bit": 1, "paged_lion_8bit": 1, "lion_32bit": 4, "paged_lion_32bit": 4,
                 "rmsprop_bnb": 4, "rmsprop_bnb_32bit": 4, "rmsprop_bnb_8bit": 1}


def optimizer_state_bytes(optimizer: str, param_bytes: int) -> float:
    """Per trainable parameter; an optimizer not listed counts as AdamW (two states)."""
    if optimizer in _STATES_FIXED:
        return _STATES_FIXED[optimizer]
    return _STATES_LIKE_PARAM.get(optimizer, 2) * param_bytes


def trainable_bytes(param_bytes: int, optimizer: str) -> float:
    """A trainable parameter's weight, its gradient (same dtype) and its optimizer state."""
    return 2 * param_bytes + optimizer_state_bytes(optimizer, param_bytes)


# ---- activations and the fit -------------------------------------------------------------

@dataclass(frozen=True)
class Estimate:
    static_bytes: int
    tokens: int
    quantized: bool
    fused_loss: bool
    fused_norm: bool = True  # Liger's RMSNorm (transformers' keeps fp32 copies)
    lean_lora: bool = False  # trainer/kernels/lora_fused.py: no second copy of each LoRA input


def per_token_layer_bytes(shape: Shape, est: Estimate) -> int:
    """A layer's kept activations per token. peft's own LoRA forward on a 4-bit model keeps
    fp32 copies of the adapted inputs (+16 x hidden; measured 234 KiB on 8B against 172 for
    LoRA); the lean forward does not (135 KiB measured for both LoRA and QLoRA)."""
    h = shape.hidden
    return 2 * ((4 if est.lean_lora else 7) * h + 4 * shape.mlp_width) + \
        (0 if est.fused_norm else 16 * h) + (16 * h if est.quantized and not est.lean_lora
                                             else 0)


def backward_transient_bytes(shape: Shape, tokens: int) -> int:
    """A layer's backward temporaries beside the kept activations (MLP gradients)."""
    return tokens * (6 * shape.mlp_width + 4 * shape.hidden)


@dataclass(frozen=True)
class Peak:
    """The estimate's parts, in bytes, with `checkpointed` of the layers recomputed."""

    static: int
    activations: int
    logits: int
    transient: int
    checkpointed: int
    layers: int

    @property
    def total(self) -> int:
        return self.static + self.activations + self.logits + self.transient


def peak(shape: Shape, est: Estimate, checkpointed: int) -> Peak:
    kept = est.tokens * per_token_layer_bytes(shape, est)
    ckpt = est.tokens * shape.hidden * 2
    # Backward of a recomputed layer holds its activations again; with some layers kept,
    # theirs are freed by then, so only all-recomputed adds one layer's worth.
    kept_layers = max(shape.layers - checkpointed, 1 if checkpointed else 0)
    logits = 0 if est.fused_loss else LOGIT_BYTES * est.tokens * shape.vocab
    return Peak(est.static_bytes, checkpointed * ckpt + kept_layers * kept, logits,
                backward_transient_bytes(shape, est.tokens), checkpointed, shape.layers)


def budget(total_bytes: int) -> float:
    return HEADROOM * total_bytes - RESERVED


def fits(shape: Shape, est: Estimate, total_bytes: int, checkpointed: int) -> bool:
    """Whether the estimate with the first `checkpointed` layers recomputed fits the GPU."""
    return peak(shape, est, checkpointed).total <= budget(total_bytes)


def layers_to_checkpoint(shape: Shape, est: Estimate, total_bytes: int) -> int:
    """Smallest k in 0..layers for which the estimate fits (layers when nothing fits)."""
    return next((k for k in range(shape.layers + 1) if fits(shape, est, total_bytes, k)),
                shape.layers)


def replication_pays(shape: Shape, sharded: Estimate, whole: Estimate,
                     total_bytes: int) -> bool:
    """`whole`: the estimate with the frozen weights replicated; `sharded`: with them
    sharded. Replicate when it fits with no more recomputed layers."""
    k_whole = layers_to_checkpoint(shape, whole, total_bytes)
    return fits(shape, whole, total_bytes, k_whole) and \
        k_whole <= layers_to_checkpoint(shape, sharded, total_bytes)


# ---- static bytes from the shape (before any model is loaded) ----------------------------

@dataclass(frozen=True)
class Setup:
    """What the spec decides about the weights and their training, for one rank.
    `shards`: GPUs the weights are split over (FSDP's shard group, or ZeRO's world);
    `zero_stage`: DeepSpeed's stage (0: none)."""

    adapter: bool = False
    lora_r: int = 8
    lora_targets: tuple[str, ...] = ()
    expert_targets: tuple[str, ...] = ()
    bits: int = 16  # 4: load_in_4bit, 8: load_in_8bit
    double_quant: bool = True
    quantize_experts: bool = False
    optimizer: str = "adamw_torch_fused"
    shards: int = 1
    fsdp: bool = False
    replicate_frozen: bool = False  # FSDP: the adapter's frozen base whole on every GPU
    zero_stage: int = 0


@dataclass(frozen=True)
class Static:
    weights: int  # frozen and trainable weights as stored on this rank
    training: int  # gradients and optimizer state (and ZeRO's fp32 master weights)
    gathered: int  # FSDP: two layers' weights all-gathered at once (the one running, the next)

    @property
    def total(self) -> int:
        return self.weights + self.training + self.gathered


def _weight_bytes(params: Params, setup: Setup) -> float:
    quant = {4: NF4_BYTES + NF4_ABSMAX[setup.double_quant], 8: 1.0}.get(setup.bits, 2.0)
    experts = quant if setup.quantize_experts and setup.bits == 4 else 2.0
    return params.linear * quant + params.experts * experts + params.other * 2.0


def static_from_shape(shape: Shape, setup: Setup) -> Static:
    params = count_params(shape)
    shards = max(setup.shards, 1)
    if setup.adapter:  # peft keeps the adapter in fp32
        trained = lora_params(shape, setup.lora_r, setup.lora_targets, setup.expert_targets)
        weights = _weight_bytes(params, setup) + trained * 4
        training = trained * (trainable_bytes(4, setup.optimizer) - 4)
        if setup.fsdp and setup.replicate_frozen:  # only the adapter is sharded
            return Static(int(weights - trained * 4 + trained * 4 / shards),
                          int(training / shards), 0)
    else:
        trained = params.total
        weights = _weight_bytes(params, setup)
        # FSDP upcasts what trains to fp32 (trainer/distributed/fsdp.py); ZeRO keeps an fp32
        # master copy beside the bf16 weights; a single GPU trains the bf16 weights as they are
        master = 4 if (setup.fsdp or setup.zero_stage) else 2
        training = trained * (trainable_bytes(master, setup.optimizer) - 2)
    if setup.zero_stage:  # 1: optimizer state (with the master weights), 2: + gradients
        grads = trained * 2
        states = training - grads
        training = states / shards + grads / (shards if setup.zero_stage >= 2 else 1)
        weights = weights / (shards if setup.zero_stage >= 3 else 1)
        return Static(int(weights), int(training), 0)
    if not setup.fsdp or shards == 1:
        return Static(int(weights), int(training), 0)
    layer = _weight_bytes(Params(params.linear, params.experts, 0), setup) / shape.layers
    return Static(int(weights / shards), int(training / shards), int(2 * layer))
