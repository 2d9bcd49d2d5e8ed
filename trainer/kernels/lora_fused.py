"""Axolotl's `lora_mlp_kernel` / `lora_qkv_kernel` / `lora_o_kernel`: a leaner LoRA forward.

peft computes `result + lora_B(lora_A(dropout(x))) * scaling` after casting x to the fp32
dtype of the adapter weights; under bf16 autocast the matmul casts it back. Per adapted
projection that is an fp32 copy of the input, a bf16 copy of it (kept for backward, beside
the identical input the frozen base matmul already keeps), then a scale and an add pass
over the output. Here, for plain LoRA (one adapter, no dropout, no DoRA or other variant):

    out = addmm(base(x), x @ A^T, (B * scaling)^T)

x stays in the compute dtype and is shared with the base matmul, and the add happens in
the GEMM's epilogue. Same function; the sum is rounded once instead of three times.
Anything else (merged, disabled, mixed adapters, variants, dropout) takes peft's forward.
"""

from __future__ import annotations

import logging
from types import MethodType

import torch
from torch import nn

log = logging.getLogger("ft.lora")

# Axolotl's key -> the projections it covers.
GROUPS = {"lora_qkv_kernel": ("q_proj", "k_proj", "v_proj"), "lora_o_kernel": ("o_proj",),
          "lora_mlp_kernel": ("gate_proj", "up_proj", "down_proj")}


def fuse_lora(model, groups: tuple[str, ...]) -> int:
    """Give every peft LoRA Linear of the named groups the lean forward; returns how many."""
    from peft.tuners.lora import LoraLayer

    names = {proj for group in groups for proj in GROUPS[group]}
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and name.rsplit(".", 1)[-1] in names and \
                isinstance(getattr(module, "lora_A", None), nn.ModuleDict):
            module.forward = MethodType(_forward, module)
            count += 1
    log.info("lean LoRA forward on %d projections (%s)", count, ", ".join(groups))
    return count


def _plain_adapter(layer, kwargs) -> str | None:
    """The one active plain-LoRA adapter, or None when peft's forward must run."""
    if layer.disable_adapters or layer.merged or kwargs.get("adapter_names") is not None:
        return None
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1:
        return None
    name = active[0]
    if name in getattr(layer, "lora_variant", {}) or layer.use_dora.get(name) or \
            not isinstance(layer.lora_dropout[name], nn.Identity) or \
            getattr(layer, "lora_bias", {}).get(name):
        return None
    return name


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    name = _plain_adapter(self, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x, *args, **kwargs)
    dtype = result.dtype
    down = torch.nn.functional.linear(x.to(dtype), self.lora_A[name].weight.to(dtype))
    up = (self.lora_B[name].weight * self.scaling[name]).to(dtype)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), down.reshape(-1, down.shape[-1]),
                      up.t())
    return out.view(result.shape)
