"""What loading does for the mixture-of-experts keys: the experts kernel, 4-bit experts,
and the expert parameters LoRA targets (trainer/models/load.py calls these two)."""

from __future__ import annotations

import logging

from torch import nn

from trainer.models.moe_experts import is_moe, set_experts_implementation, target_parameters
from trainer.models.moe_quantize import quantize_experts
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.moe")


def prepare_experts(cfg: TrainingConfig, model: nn.Module) -> None:
    """Right after loading, before peft: the experts kernel, then the 4-bit experts."""
    set_experts_implementation(model, cfg.experts_implementation)
    if not cfg.quantize_moe_experts:
        return
    if not is_moe(model):
        raise UserError(f"`quantize_moe_experts: true` stores a mixture-of-experts model's "
                        f"fused expert weights 4- or 8-bit; {type(model).__name__} has none "
                        "(`load_in_4bit` / `load_in_8bit` already quantize its Linear "
                        "layers); remove the key")
    quantize_experts(model, cfg.bnb_4bit_quant_type, cfg.bnb_4bit_use_double_quant,
                     expert_bits(cfg))


def expert_bits(cfg: TrainingConfig) -> int:
    """The experts are stored as the rest of the model is: 8-bit with `load_in_8bit`."""
    return 8 if cfg.load_in_8bit else 4


def expert_lora_targets(cfg: TrainingConfig, model: nn.Module | None) -> list[str] | None:
    """`lora_target_parameters` as full parameter paths for peft (None: not asked)."""
    wanted = cfg.lora_target_parameters
    if not wanted:
        return None
    if model is None:
        raise ValueError("lora_target_parameters needs the model to resolve its paths")
    return target_parameters(model, [wanted] if isinstance(wanted, str) else list(wanted))


def report_redirected_targets(cfg: TrainingConfig, peft_model: nn.Module) -> list[str]:
    """peft, on transformers 5, reads a `lora_target_modules` entry that ends in a
    pre-fusion expert name (`gate_proj`, `up_proj`, `down_proj`; Mixtral's `w1`..`w3`) as
    the routed experts' fused parameter, also where the entry meant a Linear layer (GLM's
    `shared_experts.gate_proj`): say so, naming the entries, instead of training something
    else without a word. Returns the redirected entries."""
    wanted = cfg.lora_target_modules
    if not wanted or isinstance(wanted, str) or not is_moe(peft_model):
        return []
    kept = getattr(peft_model.peft_config["default"], "target_modules", None) or set()
    redirected = [t for t in wanted if t not in kept]
    if redirected:
        log.warning("`lora_target_modules` %s: peft puts these on the routed experts' fused "
                    "weights (transformers 5 fused the per-expert layers of those names), "
                    "not on Linear layers of that name; list the experts in "
                    "`lora_target_parameters` and leave these out", redirected)
    return redirected
