"""Cross-field rules of the mixture-of-experts keys (`quantize_moe_experts`,
`lora_target_parameters`). Whether the model is a MoE at all is only known once its config
is read: training says so by name (trainer/models/moe_quantize.py)."""

from __future__ import annotations

from collections.abc import Iterator

from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple[str, ...], str]

# Axolotl's own experts kernels (its KernelsPlugin: `use_scattermoe`, `use_sonicmoe`).
PLUGIN_KERNELS = ("scattermoe", "sonicmoe")


def plugin_experts_kernel(data: dict) -> list[str]:
    """`experts_implementation: scattermoe` / `sonicmoe` name Axolotl's kernel plugin, which
    computes the same experts faster: the value is dropped (the model's default kernel
    runs) and the user hears it. Returns the notes."""
    value = data.get("experts_implementation")
    if value not in PLUGIN_KERNELS:
        return []
    del data["experts_implementation"]
    return [f"`experts_implementation: {value}` is Axolotl's kernel plugin, which ft does not "
            "have; the experts run on transformers' kernel (grouped_mm where it runs); set "
            "`eager`, `grouped_mm` or `batched_mm` to choose"]


def moe_problems(t: TrainingConfig) -> Iterator[Rule]:
    if t.quantize_moe_experts:
        if not (t.load_in_4bit or t.load_in_8bit) or not t.adapter:
            yield ("quantize_moe_experts",), (
                "stores a MoE model's experts as the rest of the model is quantized: it needs "
                "`load_in_4bit: true` with `adapter: qlora`, or `load_in_8bit: true` with "
                "`adapter: lora`")
        if t.lora_target_linear:
            yield ("lora_target_linear",), (
                "`quantize_moe_experts` keeps the experts as fused 4-bit parameters, which "
                "`lora_target_linear` cannot reach; list the attention and shared-expert "
                "layers in `lora_target_modules` and the experts in `lora_target_parameters`")
    if t.lora_target_parameters:
        if not t.adapter:
            yield ("lora_target_parameters",), "puts LoRA on parameters: it needs `adapter`"
        if t.lora_dropout:
            yield ("lora_dropout",), ("LoRA on parameters (`lora_target_parameters`) has no "
                                      "dropout (peft cannot apply it to a weight): set "
                                      "`lora_dropout: 0`")
        if t.peft_use_dora:
            yield ("peft_use_dora",), ("DoRA does not work on parameters "
                                       "(`lora_target_parameters`); remove one of them")
