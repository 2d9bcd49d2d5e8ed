"""Mixture-of-experts models: finding the experts, LoRA on their fused weights, and the
experts kernel.

transformers 5 stores a MoE layer's routed experts as fused 3-D parameters (experts x out x
in: `mlp.experts.gate_up_proj`, `mlp.experts.down_proj`), not as one Linear per expert, so
`lora_target_modules` cannot reach them. `lora_target_parameters` names those parameters and
goes to peft's `target_parameters` (a `ParamWrapper` per parameter that adds the low-rank
delta of every expert at once). Attention and shared experts are Linear layers and stay with
`lora_target_modules`; routers (`mlp.gate`) are neither, so they stay frozen.
"""

from __future__ import annotations

import logging

from torch import nn

from trainer.torch_free.errors import UserError

log = logging.getLogger("ft.moe")


def expert_modules(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module holding fused 3-D expert weights (parametrized ones included)."""
    return {name: module for name, module in model.named_modules()
            if is_experts(name, module) and
            any(p.dim() == 3 for p in _own_weights(module).values())}


def is_experts(name: str, module: nn.Module) -> bool:
    """By name: a 3-D weight is not always an expert stack (a Mamba layer's conv1d weight
    is 3-D too, as in Nemotron-H)."""
    return "expert" in name.rsplit(".", 1)[-1].lower() or "Expert" in type(module).__name__


def _own_weights(module: nn.Module) -> dict:
    """The module's own tensors by their public name: a parametrized (e.g. 4-bit) weight
    is found under `parametrizations.<name>.original`, not in `_parameters`."""
    own = dict(module.named_parameters(recurse=False))
    for name in getattr(module, "parametrizations", {}):
        own[name] = getattr(module, name)
    return own


def is_moe(model: nn.Module) -> bool:
    return bool(expert_modules(model))


def target_parameters(model: nn.Module, wanted: list[str]) -> list[str]:
    """Every parameter `wanted` names, as full paths in the model's definition order.

    An entry matches a parameter whose path ends with it (`mlp.experts.gate_up_proj` in
    every layer), as peft's suffix matching does. The paths are listed in full because peft
    matches a parametrized parameter (a 4-bit expert) only by its exact path, and in the
    module's definition order because that order decides how peft nests two wrappers on
    one module: the saved adapter must nest as it would on the unquantized model that
    `ft merge-lora` and other tools load it onto.
    """
    found: list[str] = []
    unmatched = []
    experts = expert_modules(model)
    for entry in wanted:
        hits = [f"{name}.{param}" for name, module in experts.items()
                for param in _own_weights(module)
                if f"{name}.{param}".endswith(entry) and
                (len(f"{name}.{param}") == len(entry) or
                 f"{name}.{param}"[-len(entry) - 1] == ".")]
        if not hits:
            unmatched.append(entry)
        found += [h for h in hits if h not in found]
    if unmatched:
        raise UserError(f"`lora_target_parameters` {unmatched} match no expert parameter of "
                        f"{type(model).__name__}; its expert parameters: "
                        f"{_parameter_suffixes(experts)}")
    order = {path: i for i, path in enumerate(_definition_order(experts))}
    return sorted(found, key=order.__getitem__)


def _definition_order(experts: dict[str, nn.Module]) -> list[str]:
    return [f"{name}.{param}" for name, module in experts.items()
            for param in getattr(module, "_ft_definition_order", None) or _own_weights(module)]


def _parameter_suffixes(experts: dict[str, nn.Module]) -> list[str]:
    """`mlp.experts.gate_up_proj` etc., without the layer prefix, for an error message."""
    return sorted({".".join(path.split(".")[-3:]) for path in _definition_order(experts)})


def nest_in_definition_order(model: nn.Module) -> None:
    """Two ParamWrappers on one parametrized module: peft nests them in alphabetical order
    (down_proj innermost), on a plain module in definition order (gate_up_proj innermost).
    The adapter's tensor names follow the nesting (`experts.base_layer.lora_A` is the inner
    one), so re-nest the 4-bit model's wrappers as peft nests them on the unquantized model
    the adapter is later loaded onto."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if not _is_param_wrapper(child) or _is_param_wrapper(parent):
                continue
            chain, base = [], child
            while _is_param_wrapper(base):
                chain.append(base)
                base = base.base_layer
            order = getattr(base, "_ft_definition_order", None)
            if len(chain) < 2 or not order:
                continue
            by_name = {w.parameter_name: w for w in chain}
            inner = base
            for name in [n for n in order if n in by_name]:
                by_name[name].base_layer = inner
                inner = by_name[name]
            setattr(parent, child_name, inner)


def _is_param_wrapper(module: nn.Module) -> bool:
    return type(module).__name__ == "ParamWrapper"


def set_experts_implementation(model: nn.Module, implementation: str | None) -> str | None:
    """The spec's `experts_implementation` (eager / grouped_mm / batched_mm), or the model's
    default; returns the one in use (None for a model without transformers' experts
    interface)."""
    can_set = getattr(type(model), "_can_set_experts_implementation", None)
    if implementation is None:
        return getattr(model.config, "_experts_implementation", None) if is_moe(model) \
            else None
    if not (callable(can_set) and can_set()):
        raise UserError(f"`experts_implementation: {implementation}` needs a mixture-of-"
                        f"experts model whose experts use transformers' experts kernels; "
                        f"{type(model).__name__} has none; remove the key")
    model.set_experts_implementation(implementation)
    log.info("experts implementation: %s", implementation)
    return implementation
