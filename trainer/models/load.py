"""Model and tokenizer from the spec: dtype, 4/8-bit, attention kernel, special tokens, LoRA.

Everything goes through `from_pretrained` with a path or hub id, so a real model and the
tests' tiny local model take the same code path.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, set_seed

from trainer.data.templates import adopt_chat_template
from trainer.distributed.fsdp import ShardingPlan, settle_replication
from trainer.kernels import attention_varlen
from trainer.kernels.lora_fused import GROUPS, fuse_lora
from trainer.kernels.lora_grouped import group_lora
from trainer.kernels.lora_mlp import lean_mlp
from trainer.kernels.plan import apply_kernels, installed, lora_kernel_groups, plan_kernels
from trainer.models.activation_memory import (
    full_checkpointing,
    kernel_kinds,
    plan_checkpointing,
    replication_fits,
)
from trainer.models.attention_support import fit_to_model
from trainer.models.hub_attention import hub_kernel_or_fallback
from trainer.models.mistral_tokenizer import load_mistral_common_tokenizer
from trainer.models.moe_load import (
    expert_bits,
    expert_lora_targets,
    prepare_experts,
    report_redirected_targets,
)
from trainer.models.moe_quantize import finish_after_adapter, packing_experts_while_loading
from trainer.models.qat import prepare_qat
from trainer.models.quantization_config import prequantized_config
from trainer.models.source import (
    base_config_kwargs,
    load_config,
    model_class,
    model_kwargs,
    tokenizer_class,
    tokenizer_source_kwargs,
)
from trainer.models.unfrozen import unfreeze_only
from trainer.torch_free.attention_names import is_hub_kernel
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.model")

# Used when a tokenizer has no pad token: padding with EOS would teach the model to never
# stop (the pad positions' EOS labels are masked, but real EOS then looks like padding).
# Reserved pad tokens a vocabulary may already have come first: no embedding resize.
EXISTING_PAD_TOKENS = ("<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "[PAD]")
FALLBACK_PAD_TOKEN = "<|ft_pad|>"


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype
    bf16: bool
    fp16: bool
    tf32: bool | None


def choose_precision(cfg: TrainingConfig) -> Precision:
    """bf16 where the GPU has it (`bf16: auto`), fp32 on CPU: CPU bf16 matmuls are slow."""
    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if cfg.bf16 is True and not bf16_ok and cuda:
        raise RuntimeError("`bf16: true` but this GPU has no bf16; use `fp16: true`")
    bf16 = bool(cuda and (cfg.bf16 is True or (cfg.bf16 == "auto" and bf16_ok and not cfg.fp16)))
    fp16 = bool(cuda and cfg.fp16 and not bf16)
    dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
    tf32 = cfg.tf32 if cuda else None
    return Precision(dtype, bf16, fp16, tf32)


def choose_attention(cfg: TrainingConfig, dtype: torch.dtype | None = None) -> str:
    """The spec's choice or the best kernel installed, among those the architecture has
    (trainer/models/attention_support.py)."""
    return fit_to_model(cfg, _preferred_attention(cfg, dtype), torch.cuda.is_available())


def _preferred_attention(cfg: TrainingConfig, dtype: torch.dtype | None = None) -> str:
    """The spec's choice, or the best kernel installed; flash-attn is optional.

    Packed rows in bf16/fp16 on a GPU, asking for sdpa or nothing (or flash-attn where it is
    not installed), go to `ft_varlen`: PyTorch's own flash kernel over each sample
    (trainer/kernels/attention_varlen.py) instead of sdpa's block-diagonal mask, which leaves sdpa's
    flash path (measured on an H200, 8B LoRA, packed: sdpa 7,150 tokens/s, flex 7,709;
    bench/results/README.md). Without it (older torch), flex_attention. flex cannot train on
    the CPU, so the CPU keeps sdpa.
    """
    wanted = cfg.requested_attention
    if is_hub_kernel(wanted):
        wanted = hub_kernel_or_fallback(wanted)
        if wanted == cfg.requested_attention:
            return wanted
    if wanted == "flash_attention_2" and _flash_attn_usable():
        return wanted
    if wanted in (None, "sdpa", "flash_attention_2") and cfg.sample_packing and \
            dtype in (torch.bfloat16, torch.float16) and attention_varlen.available():
        attention_varlen.register()
        log.info("packed rows: %s (PyTorch's flash kernel per sample)", attention_varlen.NAME)
        return attention_varlen.NAME
    if wanted in (None, "flash_attention_2") and cfg.sample_packing and \
            torch.cuda.is_available() and not _flash_attn_usable():
        if wanted:
            log.warning("flash-attn is not installed: packed rows use flex_attention")
        return "flex_attention"
    if wanted == "flash_attention_2":
        log.warning("flash-attn is not installed (or no GPU): using PyTorch sdpa, which also "
                    "keeps packed samples apart via position_ids")
        return "sdpa"
    if wanted == "flex_attention" and not torch.cuda.is_available():
        log.warning("flex_attention cannot train on the CPU: using PyTorch sdpa, which also "
                    "keeps packed samples apart via position_ids")
        return "sdpa"
    return wanted or "sdpa"


def _flash_attn_usable() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def load_tokenizer(cfg: TrainingConfig) -> PreTrainedTokenizerBase:
    if cfg.tokenizer_use_mistral_common:
        return load_mistral_common_tokenizer(cfg)
    source, kwargs = tokenizer_source_kwargs(cfg)
    tokenizer = tokenizer_class(cfg).from_pretrained(source, **kwargs)
    if cfg.special_tokens:
        tokens = cfg.special_tokens.model_dump(exclude_none=True)
        tokenizer.add_special_tokens(tokens)
    if cfg.tokens:
        tokenizer.add_tokens(cfg.tokens)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        existing = next((t for t in EXISTING_PAD_TOKENS if t in vocab), None)
        if existing is not None:
            tokenizer.pad_token = existing
        elif tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": FALLBACK_PAD_TOKEN})
    tokenizer.padding_side = "right"
    adopt_chat_template(cfg, tokenizer)
    return tokenizer


def compute_dtype(cfg: TrainingConfig, precision: Precision) -> torch.dtype:
    """What the matmuls run in: the precision's dtype, except that 4-bit weights compute in
    bf16 even where everything else is fp32 (a CPU run)."""
    if cfg.load_in_4bit and precision.dtype == torch.float32:
        return torch.bfloat16
    return precision.dtype


def quantization_config(cfg: TrainingConfig, precision: Precision):
    if not (cfg.load_in_4bit or cfg.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = compute_dtype(cfg, precision)
    # Storage in the compute dtype (not uint8) is what lets FSDP shard the 4-bit weights.
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
                              bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
                              bnb_4bit_compute_dtype=compute, bnb_4bit_quant_storage=compute)


def load_model(cfg: TrainingConfig, tokenizer: PreTrainedTokenizerBase, precision: Precision,
               on_meta: bool = False, device: torch.device | None = None,
               sharding: ShardingPlan | None = None) -> tuple[Any, ShardingPlan | None]:
    """The model with its adapter, and the sharding plan with its `auto` choices settled.
    `on_meta`: structure only, no weights read (a sharded rank that receives its weights by
    broadcast). `device`: where to quantize while loading (a sharded QLoRA rank quantizes
    on its own GPU; see trainer/distributed/fsdp.py)."""
    if on_meta:
        model = _skeleton(cfg, precision)
    elif cfg.reinit_weights:
        set_seed(cfg.seed)  # the same random weights run after run
        model = _from_config(cfg, precision)
    else:
        quant = quantization_config(cfg, precision)
        placement = {"device_map": {"": device}} if (quant is not None and device) else {}
        with packing_experts_while_loading(cfg.quantize_moe_experts, cfg.bnb_4bit_quant_type,
                                           cfg.bnb_4bit_use_double_quant, expert_bits(cfg)):
            model = model_class(cfg).from_pretrained(
                cfg.base_model, dtype=precision.dtype,
                attn_implementation=choose_attention(cfg, precision.dtype),
                quantization_config=quant or prequantized_config(cfg), **model_kwargs(cfg),
                **base_config_kwargs(cfg), **placement)
    prepare_experts(cfg, model)
    _resize_embeddings(cfg, model, len(tokenizer), mean_resizing=not on_meta)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.use_cache = False  # the KV cache is useless in training and costs memory
    kernels = plan_kernels(cfg, on_gpu=torch.cuda.is_available(),
                           liger_installed=installed("liger_kernel"),
                           cce_installed=installed("cut_cross_entropy"))
    apply_kernels(model, kernels)  # before peft: LoRA then wraps the patched projections
    if cfg.qat is not None:  # before peft too: the adapter's own matrices stay exact
        prepare_qat(model, cfg.qat)
    if cfg.adapter:
        # The Trainer seeds only after the model exists, and loading consumes random numbers
        # differently on a meta skeleton, under ZeRO-3 or when quantizing. Seeding here makes
        # the adapter's initial weights the same run after run, whatever the sharding.
        set_seed(cfg.seed)
        model = _add_adapter(cfg, model, precision.dtype)
        if cfg.quantize_moe_experts:  # packed as the Linear layers' 4-bit weights are
            finish_after_adapter(model, compute_dtype(cfg, precision))
    groups = lora_kernel_groups(cfg, on_gpu=torch.cuda.is_available()) if cfg.adapter else ()
    if groups:
        fuse_lora(model, groups)
    if "lora_mlp_kernel" in groups:
        lean_mlp(model, liger_swiglu=kernels.liger.get("liger_glu_activation", False))
    if groups and sharding is None and not cfg.deepspeed:  # the frozen base whole here
        group_lora(model, groups)
    if cfg.unfrozen_parameters:
        unfreeze_only(model, cfg.unfrozen_parameters, adapter=bool(cfg.adapter))
    fused_norm = kernels.liger.get("liger_rms_norm", False)
    lean_lora = len(groups) == len(GROUPS)
    if sharding is not None and sharding.replicate_frozen is None:  # `auto`: estimate it
        sharding = settle_replication(sharding, replication_fits(
            model, cfg, kernel_kinds(cfg, kernels.fused_loss, fused_norm, lean_lora)))
    plan_checkpointing(model, cfg, fused_loss=kernels.fused_loss, fused_norm=fused_norm,
                       lean_lora=lean_lora,
                       replicated_frozen=bool(sharding and sharding.replicate_frozen))
    return model, sharding


def _frozen_embeddings_in(model, dtype: torch.dtype, trained: list[str]) -> None:
    """Undo peft's fp32 upcast for the frozen input embeddings and lm_head of a quantized
    model (as Axolotl does; the norms stay fp32). In fp32 the 128k-vocabulary head ran its
    matmul off the bf16 tensor cores and held ~2 GiB more on 8B; frozen, they need no fp32
    master copy. A module in `lora_modules_to_save` trains and keeps fp32."""
    names = {id(module): name for name, module in model.named_modules()}
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is None or module.weight.dtype == dtype:
            continue
        if names.get(id(module), "").rsplit(".", 1)[-1] in trained:
            continue
        module.to(dtype)


def _skeleton(cfg: TrainingConfig, precision: Precision):
    """Parameters on the meta device, buffers real (the rotary frequencies are computed,
    not loaded, so they must exist on every rank)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = _from_config(cfg, precision)
    # init_empty_weights re-creates every parameter it registers, so the tie of lm_head to
    # the input embeddings is lost: tie again, or this rank shards one more tensor than
    # rank 0 and FSDP's first all-gather fails ("Received data size doesn't match").
    model.tie_weights()
    return model


def _from_config(cfg: TrainingConfig, precision: Precision):
    """The model built from its config, weights freshly initialised (`reinit_weights`) or,
    under init_empty_weights, not at all."""
    cls = model_class(cfg)
    # Auto classes build from a config with from_config, concrete ones with _from_config.
    build = getattr(cls, "from_config", None) or cls._from_config
    return build(load_config(cfg), dtype=precision.dtype,
                 attn_implementation=choose_attention(cfg, precision.dtype),
                 trust_remote_code=cfg.trust_remote_code)


def _resize_embeddings(cfg: TrainingConfig, model, vocab: int, mean_resizing: bool) -> None:
    """Grow the embeddings for added tokens; `resize_token_embeddings_to_32x` rounds the row
    count up to a multiple of 32 (tensor-core friendly shapes)."""
    rows = model.get_input_embeddings().weight.shape[0]
    multiple = 32 if cfg.resize_token_embeddings_to_32x else None
    if vocab > rows or (multiple and rows % multiple):
        # Mean resizing needs the real embeddings; a skeleton gets them by broadcast.
        model.resize_token_embeddings(max(vocab, rows), pad_to_multiple_of=multiple,
                                      mean_resizing=mean_resizing)


def lora_config(cfg: TrainingConfig, model=None):
    from peft import LoraConfig

    targets = "all-linear" if cfg.lora_target_linear else cfg.lora_target_modules
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets or [], modules_to_save=cfg.lora_modules_to_save,
                      target_parameters=expert_lora_targets(cfg, model),
                      use_dora=cfg.peft_use_dora, use_rslora=cfg.peft_use_rslora,
                      bias="none", task_type="CAUSAL_LM")


def _add_adapter(cfg: TrainingConfig, model, training_dtype: torch.dtype):
    from peft import get_peft_model, prepare_model_for_kbit_training

    if cfg.load_in_4bit or cfg.load_in_8bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=full_checkpointing(cfg))
        if training_dtype != torch.float32:  # mixed precision: autocast meets the fp32 norms
            _frozen_embeddings_in(model, training_dtype, trained=cfg.lora_modules_to_save or [])
    model = get_peft_model(model, lora_config(cfg, model))
    report_redirected_targets(cfg, model)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("adapter %s: %s trainable of %s parameters (%.2f%%)", cfg.adapter,
             f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    return model
