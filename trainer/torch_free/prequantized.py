"""`model_quantization_config`: how a checkpoint that ships already quantized is read.

gpt-oss ships its experts in MXFP4 (4-bit blocks + one shared power-of-two scale per 32
values). transformers' MXFP4 experts run forward only (no backward, and peft cannot wrap
them), so training needs them dequantized while loading: Axolotl's gpt-oss examples say
`model_quantization_config: Mxfp4Config` with `dequantize: true`, and that is what ft honours.
Torch-free: `ft validate` applies these rules on a machine without the trainer stack, and
the trainer builds its transformers config from the same checked values.
"""

from __future__ import annotations

from typing import Any

from trainer.torch_free.training import TrainingConfig

MXFP4 = "Mxfp4Config"
MXFP4_KWARGS = ("dequantize", "modules_to_not_convert")
_KEY = "model_quantization_config"
_KWARGS = "model_quantization_config_kwargs"


def prequantized_problems(t: TrainingConfig) -> list[tuple[tuple[str, ...], str]]:
    """(yaml path, message) for each setting ft cannot honour; empty when it can."""
    kwargs = t.model_quantization_config_kwargs or {}
    if t.model_quantization_config is None:
        if kwargs:
            return [((_KWARGS,), f"`{_KWARGS}` needs `{_KEY}: {MXFP4}` (the only "
                     "pre-quantized format ft reads)")]
        return []
    if t.model_quantization_config != MXFP4:
        return [((_KEY,), f"`{_KEY}: {t.model_quantization_config}` (FP8 checkpoints read "
                 "through transformers' fine-grained FP8 kernels) is not supported; ft reads "
                 f"MXFP4 checkpoints dequantized (`{_KEY}: {MXFP4}`) and quantizes with "
                 "bitsandbytes (`load_in_4bit` / `load_in_8bit`): point `base_model` at a "
                 "bf16 copy of the model")]
    problems = []
    unknown = sorted(set(kwargs) - set(MXFP4_KWARGS))
    if unknown:
        problems.append(((_KWARGS,), f"unknown {MXFP4} argument(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(MXFP4_KWARGS)}"))
    if kwargs.get("dequantize") is not True:
        problems.append(((_KWARGS, "dequantize"), (
            "MXFP4 weights kept quantized cannot be trained (transformers' MXFP4 experts "
            "have no backward pass and LoRA cannot wrap them); set "
            f"`{_KWARGS}: {{dequantize: true}}` to load them as bf16 weights, as Axolotl's "
            "gpt-oss examples do")))
    if t.load_in_4bit or t.load_in_8bit:
        problems.append(((_KEY,), f"`{_KEY}` and `load_in_4bit` / `load_in_8bit` cannot be "
                         "used together: the checkpoint is read dequantized, not requantized"))
    if t.fsdp_config is not None and t.fsdp_config.cpu_ram_efficient_loading:
        problems.append((("fsdp_config", "cpu_ram_efficient_loading"), (
            f"`cpu_ram_efficient_loading` with an MXFP4 checkpoint (`{_KEY}`) is not "
            "supported (nor in Axolotl): turn it off (each rank then dequantizes its own "
            "copy while loading), or point `base_model` at a dequantized copy")))
    return problems


def mxfp4_arguments(t: TrainingConfig) -> dict[str, Any] | None:
    """Mxfp4Config's arguments for a spec that passed `prequantized_problems`, else None."""
    if t.model_quantization_config != MXFP4:
        return None
    return dict(t.model_quantization_config_kwargs or {})
