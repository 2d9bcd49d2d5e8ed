"""`quantize_moe_experts`: the routed experts' fused 3-D weights stored bitsandbytes 4-bit.

bitsandbytes' `load_in_4bit` quantizes Linear layers only; a transformers 5 MoE keeps
nearly all its weights in fused 3-D expert parameters (Qwen3-30B-A3B: 29 of 30.5 B), so
QLoRA alone leaves them in bf16 (61 GB). Here each such parameter is packed with
bitsandbytes' `quantize_4bit` (nf4 or fp4 as `bnb_4bit_quant_type` says, double
quantization as `bnb_4bit_use_double_quant` says) and put back behind a torch
parametrization that dequantizes it when the experts' forward reads it: 4.5 bits a weight.
LoRA on the experts (`lora_target_parameters`) adds its delta on top of the dequantized
weight, so the gradient reaches the adapter and never the frozen 4-bit base.

Within one forward of the experts module the dequantized weight is computed once and
reused (torch's parametrization cache, switched on around that forward only).

The packed bytes are a uint8 parameter while peft prepares the model (its k-bit step casts
every bf16/fp16 parameter to fp32, which would corrupt packed bytes) and are then viewed as
the compute dtype (`store_packed_as`), as `bnb_4bit_quant_storage` does for the Linear
layers: FSDP then shards and gathers them like any bf16 tensor.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from types import MethodType

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from trainer.models.moe_experts import expert_modules, is_experts, nest_in_definition_order

log = logging.getLogger("ft.moe")


def quantize_experts(model: nn.Module, quant_type: str = "nf4", double_quant: bool = True,
                     bits: int = 4) -> int:
    """Pack every 3-D expert weight of `model` in place; returns how many were packed.
    Biases (2-D) and routers stay as they are; already packed weights are skipped."""
    count = 0
    for module in expert_modules(model).values():
        names = [n for n, p in module.named_parameters(recurse=False) if p.dim() == 3]
        for name in names:
            pack_parameter(module, name, quant_type, double_quant, bits)
            count += 1
    packed = sum(len(getattr(m, "parametrizations", {})) for m in expert_modules(model).values())
    if packed:
        log.info("quantize_moe_experts: %d expert weights stored %d-bit (%s)%s", packed, bits,
                 quant_type if bits == 4 else "int8", f", {packed - count} of them while "
                 "loading" if packed > count else "")
    return packed


def pack_parameter(module: nn.Module, name: str, quant_type: str, double_quant: bool,
                   bits: int = 4) -> None:
    """Replace `module.<name>` by its 4-bit (or 8-bit: `load_in_8bit`) packing behind a
    dequantizing parametrization."""
    from bitsandbytes import functional as bnbf
    from bitsandbytes.nn.parametrize import Bnb4bitParametrization

    if not hasattr(module, "_ft_definition_order"):
        # peft nests two adapters on one module by this order (trainer/models/moe_experts.py)
        module._ft_definition_order = list(module._parameters)
    weight = getattr(module, name)
    if bits == 8:
        packed, unpack = _int8_rows(weight.data)
    else:
        packed, state = bnbf.quantize_4bit(weight.data, quant_type=quant_type,
                                           compress_statistics=double_quant)
        unpack = Bnb4bitParametrization(state)
    setattr(module, name, nn.Parameter(packed, requires_grad=False))
    del weight
    parametrize.register_parametrization(module, name, unpack, unsafe=True)
    _cache_within_forward(module)


def _int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, nn.Module]:
    """bitsandbytes' int8 with one scale per row (as `load_in_8bit`'s Linear layers): each
    expert's output rows, the 3-D tensor seen as one 2-D matrix."""
    from bitsandbytes import functional as bnbf

    rows = weight.reshape(-1, weight.shape[-1]).to(torch.float16)
    packed, row_stats, _ = bnbf.int8_vectorwise_quant(rows)
    return packed, _Int8Rows(row_stats, weight.shape, weight.dtype)


class _Int8Rows(nn.Module):
    """Dequantizes the int8 rows back to the expert stack's shape and dtype."""

    def __init__(self, row_stats: torch.Tensor, shape: torch.Size, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("row_stats", row_stats)
        self.shape, self.dtype = tuple(shape), dtype

    @torch.no_grad()
    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        from bitsandbytes import functional as bnbf

        return bnbf.int8_vectorwise_dequant(packed, self.row_stats).reshape(
            self.shape).to(self.dtype)


@contextmanager
def packing_experts_while_loading(enabled: bool, quant_type: str, double_quant: bool,
                                  bits: int = 4):
    """Pack each expert weight as soon as transformers has placed it, so the bf16 experts
    never all sit in memory at once (a 106B MoE's would not fit one GPU, its 4-bit ones
    do); and skip transformers' allocator warm-up, which reserves the bf16 size of every
    weight up front. Both are transformers internals (5.x): where they are missing, the
    weights load in bf16 and `quantize_experts` packs them after loading."""
    import transformers.core_model_loading as loading
    import transformers.modeling_utils as modeling

    place = getattr(loading, "set_param_for_module", None)
    warmup = getattr(modeling, "caching_allocator_warmup", None)
    if not enabled or place is None or warmup is None:
        yield
        return

    def place_and_pack(model, target_name, param_value, *args, **kwargs):
        place(model, target_name, param_value, *args, **kwargs)
        path, _, name = target_name.rpartition(".")
        module = model.get_submodule(path) if path else model
        weight = module._parameters.get(name)
        if weight is not None and weight.dim() == 3 and is_experts(path, module):
            pack_parameter(module, name, quant_type, double_quant, bits)

    loading.set_param_for_module = place_and_pack
    modeling.caching_allocator_warmup = _no_warmup
    try:
        yield
    finally:
        loading.set_param_for_module = place
        modeling.caching_allocator_warmup = warmup


def _no_warmup(*args, **kwargs) -> None:
    return None


def finish_after_adapter(model: nn.Module, compute_dtype: torch.dtype) -> None:
    """After peft wrapped the 4-bit experts: nest its wrappers as on the unquantized model,
    make each wrapper take its delta off again after the forward, and view the packed
    bytes in the compute dtype."""
    nest_in_definition_order(model)
    for module in model.modules():
        if type(module).__name__ == "ParamWrapper":
            module._remove_parametrizations = MethodType(_remove_lora_delta, module)
            module._activate_lora = MethodType(_fresh_activation(module._activate_lora), module)
    store_packed_as(model, compute_dtype)


def _fresh_activation(activate):
    """Two wrappers on one 4-bit module: the outer one turns torch's parametrization cache
    on, and the inner one, reading its weight to size its delta, caches the plain
    dequantized weight just before it adds the delta; the forward would then use that
    cached weight and the inner adapter would get no gradient. Drop that entry once the
    delta is in place."""
    @contextmanager
    def activate_fresh(wrapper, adapters):
        with activate(adapters):
            key = (id(wrapper.get_base_layer()), wrapper.parameter_name)
            parametrize._cache.pop(key, None)
            yield
    return activate_fresh


def _remove_lora_delta(wrapper) -> None:
    """peft (0.21) adds a wrapper's delta as one more parametrization during its forward
    and removes it afterwards; on a weight that already has one (the 4-bit dequantization)
    it looks only for its unfolded delta kind and leaves the folded one (`_LoraFactorsProxy`,
    what a single adapter on experts uses) in place: each step would stack another stale
    delta. This removes the last delta of either kind."""
    base = wrapper.get_base_layer()
    plist = base.parametrizations[wrapper.parameter_name]
    for i in reversed(range(len(plist))):
        if type(plist[i]).__name__ in _LORA_DELTAS:
            del plist[i]
            return
    raise RuntimeError(f"no LoRA delta on {wrapper.parameter_name} to remove")


_LORA_DELTAS = ("_LoraFactorsProxy", "_LoraParameterProxy")


def store_packed_as(model: nn.Module, dtype: torch.dtype) -> None:
    """View the packed bytes as `dtype` (no copy): one floating dtype for FSDP to shard."""
    for module in expert_modules(model).values():
        for plist in getattr(module, "parametrizations", {}).values():
            packed = plist.original
            if packed.dtype != torch.uint8 or dtype.itemsize == 1:
                continue
            width = dtype.itemsize
            plist.original = nn.Parameter(packed.data.reshape(-1, width).view(dtype),
                                          requires_grad=False)


def packed_bytes(model: nn.Module) -> int:
    """Bytes of the packed expert weights (what they cost in memory)."""
    return sum(plist.original.numel() * plist.original.element_size()
               for module in expert_modules(model).values()
               for plist in getattr(module, "parametrizations", {}).values())


def _cache_within_forward(module: nn.Module) -> None:
    """Dequantize once per forward of `module`, and free the result when it returns (also
    when a checkpointed recompute stops it early: `always_call`)."""
    if getattr(module, "_ft_dequant_cache", False):
        return
    module.register_forward_pre_hook(_enable_cache)
    module.register_forward_hook(_disable_cache, always_call=True)
    module._ft_dequant_cache = True


def _enable_cache(module: nn.Module, inputs) -> None:
    parametrize._cache_enabled += 1


def _disable_cache(module: nn.Module, inputs, output) -> None:
    parametrize._cache_enabled = max(0, parametrize._cache_enabled - 1)
    if not parametrize._cache_enabled:
        parametrize._cache = {}
