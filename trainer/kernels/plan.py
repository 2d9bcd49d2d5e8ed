"""Fused kernels: Axolotl's `liger_*` keys and its cut-cross-entropy plugin -> real kernels.

| spec key | what runs |
|---|---|
| `liger_rope` | Liger's rotary embedding kernel |
| `liger_rms_norm` | Liger's RMSNorm |
| `liger_glu_activation` | Liger's SwiGLU (GeGLU for Gemma) MLP |
| `liger_layer_norm` | Liger's LayerNorm (models that have one) |
| `liger_fused_linear_cross_entropy` | lm_head + loss in chunks: logits never stored |
| `liger_cross_entropy` | Liger's loss on materialised logits |
| `cut_cross_entropy` (+ its plugin) | Apple's cut-cross-entropy: logits never stored |

Where the spec says nothing, ft turns on every Liger kernel the model type has (the loss as
the fused linear cross-entropy) when liger-kernel imports and a GPU trains: they compute
the same functions, only without storing the [tokens x 128k] logits and with fewer
launches, and bench/results shows the per-step loss staying within bf16 noise of the plain
path. A key set to false keeps that one kernel off; `liger_kernel: false` keeps all off.

Liger patches the loaded model instance (`_apply_liger_kernel_to_instance`, the call
transformers' own `use_liger_kernel` makes), before peft wraps it: the LoRA layers then
replace the projections the patched MLP calls, so LoRA and QLoRA keep working.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from trainer.torch_free.errors import UserError
from trainer.torch_free.training import LIGER_KEYS, TrainingConfig

log = logging.getLogger("ft.kernels")

# Spec key -> keyword(s) of liger's apply_liger_kernel_to_<model_type>; liger drops the
# ones a model type does not take (Llama has no layer norm, Gemma's GLU is `geglu`).
LIGER_ARGS = {
    "liger_rope": ("rope",),
    "liger_rms_norm": ("rms_norm",),
    "liger_glu_activation": ("swiglu", "geglu"),
    "liger_layer_norm": ("layer_norm",),
    "liger_fused_linear_cross_entropy": ("fused_linear_cross_entropy",),
    "liger_cross_entropy": ("cross_entropy",),
}
# Off unless asked: the fused linear cross-entropy does the same work without the logits.
_OFF_BY_DEFAULT = ("liger_cross_entropy",)


@dataclass(frozen=True)
class KernelPlan:
    liger: dict[str, bool] = field(default_factory=dict)  # spec key -> on; empty: no Liger
    cut_cross_entropy: bool = False
    chosen_by_ft: bool = False  # no key asked for it: ft's default

    @property
    def fused_loss(self) -> bool:
        """True when the logits are never stored (decides the memory plan)."""
        return self.cut_cross_entropy or self.liger.get("liger_fused_linear_cross_entropy",
                                                         False)

    def liger_kwargs(self) -> dict[str, bool]:
        return {arg: on for key, on in self.liger.items() for arg in LIGER_ARGS[key]}

    def describe(self) -> str:
        on = [k for k, v in self.liger.items() if v] + \
            (["cut_cross_entropy"] if self.cut_cross_entropy else [])
        return ", ".join(on) or "none"


def lora_kernel_groups(cfg: TrainingConfig, on_gpu: bool) -> tuple[str, ...]:
    """Axolotl's lora_*_kernel keys that are on; unset ones follow ft's default: on for
    plain LoRA (no dropout, DoRA) on a GPU. CPU runs keep peft's own forward."""
    from trainer.kernels.lora_fused import GROUPS

    plain = bool(cfg.adapter) and cfg.lora_dropout == 0 and not cfg.peft_use_dora
    return tuple(k for k in GROUPS if getattr(cfg, k) or
                 (getattr(cfg, k) is None and plain and on_gpu))


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plan_kernels(cfg: TrainingConfig, *, on_gpu: bool, liger_installed: bool,
                 cce_installed: bool) -> KernelPlan:
    """Which kernels this run gets. Raises UserError when the spec asks for a kernel whose
    package is missing; on a CPU (no triton) an asked-for kernel is skipped with a warning."""
    asked_liger = _asked_liger(cfg)
    # As in Axolotl, listing a plugin asks for nothing by itself: its keys switch kernels on.
    asked_cce = bool(cfg.cut_cross_entropy)
    if not on_gpu:
        if asked_liger or asked_cce:
            log.warning("fused kernels (Liger, cut-cross-entropy) need a GPU: this run "
                        "uses the plain PyTorch ops")
        return KernelPlan()
    if asked_cce and not cce_installed:
        raise UserError("`cut_cross_entropy: true` needs the cut-cross-entropy package: "
                        "pip install cut-cross-entropy")
    if asked_liger and not liger_installed:
        raise UserError("the spec asks for Liger kernels (`liger_*` keys) but liger-kernel "
                        "is not installed: pip install liger-kernel")
    if cfg.liger_kernel is False or not liger_installed:
        return KernelPlan(cut_cross_entropy=asked_cce)
    other_loss = asked_cce or bool(cfg.liger_cross_entropy)
    liger = {}
    for key in LIGER_KEYS:
        value = getattr(cfg, key)
        if value is None:  # ft's default: on, except what another loss kernel replaces
            value = key not in _OFF_BY_DEFAULT and not (
                key == "liger_fused_linear_cross_entropy" and other_loss)
        liger[key] = bool(value)
    return KernelPlan(liger=liger, cut_cross_entropy=asked_cce,
                      chosen_by_ft=not asked_liger and not asked_cce)


def _asked_liger(cfg: TrainingConfig) -> bool:
    return bool(cfg.liger_kernel) or any(getattr(cfg, k) for k in LIGER_KEYS)


def apply_kernels(model, plan: KernelPlan) -> None:
    """Patch the loaded (not yet peft-wrapped) model in place."""
    if any(plan.liger.values()):
        _apply_liger(model, plan)
    if plan.cut_cross_entropy:
        from trainer.kernels.cut_cross_entropy import patch_model

        patch_model(model)
    log.info("kernels: %s%s", plan.describe(), " (ft's default)" if plan.chosen_by_ft else "")


def _apply_liger(model, plan: KernelPlan) -> None:
    from liger_kernel.transformers.monkey_patch import (
        MODEL_TYPE_TO_APPLY_LIGER_FN,
        _apply_liger_kernel_to_instance,
    )

    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        message = f"Liger has no kernels for model type {model_type!r}: plain ops are used"
        if plan.chosen_by_ft:
            log.info(message)
        else:
            log.warning(message)
        return
    _apply_liger_kernel_to_instance(model=model, **plan.liger_kwargs())
