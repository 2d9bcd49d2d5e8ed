"""Which `optimizer:` names train, and why the others are refused at validate time.

Every name transformers' Trainer knows (its OptimizerNames) is in exactly one of the two
tables; tests/test_step_knobs.py proves it against the installed transformers. A name
trains when its package is in the `[train]` extra (torch, bitsandbytes, torchao). Axolotl's
own optimizers (not transformers') are refused by name too: they are Axolotl code.
"""

from __future__ import annotations

# transformers names whose optimizer ships with ft's [train] extra.
TRAINS = frozenset({
    "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop",
    # torchao (its low-bit AdamW states; they run on CPU too)
    "adamw_torch_4bit", "adamw_torch_8bit",
    # bitsandbytes
    "adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit",
})

TORCHAO = ("adamw_torch_4bit", "adamw_torch_8bit")
# Axolotl's names for the same torchao optimizers.
RENAMED = {"ao_adamw_4bit": "adamw_torch_4bit", "ao_adamw_8bit": "adamw_torch_8bit"}

_GALORE = ("GaLore optimizers are not supported (they need the galore-torch package and "
           "`optim_target_modules`); use adamw_torch_8bit or adamw_bnb_8bit for a smaller "
           "optimizer state")
_NOT_SHIPPED = "ft does not install {}; use adamw_torch_fused, adamw_torch_8bit or adamw_bnb_8bit"
_AXOLOTL_OWN = ("is Axolotl's own optimizer, not a transformers one; use adamw_torch_fused, "
                "adamw_torch_8bit or adamw_bnb_8bit")

# transformers (and Axolotl) names ft refuses, with the reason.
REFUSED = {
    **dict.fromkeys(("galore_adamw", "galore_adamw_8bit", "galore_adafactor",
                     "galore_adamw_layerwise", "galore_adamw_8bit_layerwise",
                     "galore_adafactor_layerwise"), _GALORE),
    **dict.fromkeys(("apollo_adamw", "apollo_adamw_layerwise"),
                    _NOT_SHIPPED.format("the APOLLO optimizer (apollo-torch)")),
    **dict.fromkeys(("lomo", "adalomo"), "LOMO fuses the update into backward and needs "
                    "the lomo-optim package; " + _NOT_SHIPPED.format("it")),
    "grokadamw": _NOT_SHIPPED.format("GrokAdamW (grokadamw)"),
    "stable_adamw": _NOT_SHIPPED.format("StableAdamW (torch-optimi)"),
    **dict.fromkeys(("schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd"),
                    _NOT_SHIPPED.format("schedule-free optimizers (schedulefree)")),
    "adamw_anyprecision": _NOT_SHIPPED.format("AnyPrecisionAdamW (torchdistx)"),
    "adamw_torch_xla": "adamw_torch_xla is for TPUs; ft trains on GPUs and CPUs",
    "adamw_torch_npu_fused": "adamw_torch_npu_fused is for Ascend NPUs; ft trains on GPUs "
                             "and CPUs",
    **{name: f"`{name}` {_AXOLOTL_OWN}" for name in (
        "optimi_adamw", "ao_adamw_fp8", "adopt_adamw", "adamc", "came_pytorch", "muon",
        "muon_8bit", "dion", "sinkgd", "polora", "flash_adamw", "flash_adam", "flash_sgd",
        "flash_sgdw", "flash_lion", "scao")},
}


def optimizer_problem(name: str) -> str | None:
    """None when `name` trains; otherwise what to write instead."""
    if name in TRAINS or name in RENAMED:
        return None
    if name in REFUSED:
        return REFUSED[name]
    return (f"unknown optimizer {name!r}; ft trains with {', '.join(sorted(TRAINS))}")


def transformers_name(name: str) -> str:
    return RENAMED.get(name, name)
