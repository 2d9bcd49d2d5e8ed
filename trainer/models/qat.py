"""`qat:` quantization-aware training: torchao swaps each nn.Linear (and with
`quantize_embedding`, the input embedding) for a fake-quantized one, whose forward rounds
weights (and activations) to the target format and back, so training sees the quantization
error and learns around it; gradients pass straight through the rounding.

The dtype pairs and their torchao fake quantizers follow Axolotl's mapping (its
utils/quantization.py, read for the facts): int4 weights use the int4 preshuffled-kernel
numerics, int8 activations are per-token asymmetric, fp8 is e4m3 for both. Applied before
the adapter, so a LoRA adapter's own matrices stay full precision. After training the
fake quantizers are removed (torchao's convert step): the saved model is a plain
transformers model, ready for real post-training quantization.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

from trainer.torch_free.errors import UserError
from trainer.torch_free.qat_spec import QatSpec, qat_problem

log = logging.getLogger("ft.qat")


def _fake_quantizers(qat: QatSpec):
    from torchao.quantization.qat.fake_quantize_config import (
        Float8FakeQuantizeConfig,
        Int4WeightFakeQuantizeConfig,
        IntxFakeQuantizeConfig,
    )

    fp8 = torch.float8_e4m3fn
    activation = {
        None: None, "float8_e4m3fn": Float8FakeQuantizeConfig(dtype=fp8),
        "int8": IntxFakeQuantizeConfig(dtype=torch.int8, granularity="per_token",
                                       is_symmetric=False),
    }[qat.activation_dtype]
    if qat.weight_dtype == "float8_e4m3fn":
        return activation, Float8FakeQuantizeConfig(dtype=fp8)
    kwargs = {"group_size": qat.group_size or 128}
    if qat.activation_dtype == "int8":
        kwargs["activation_dtype"] = torch.bfloat16  # the kernel's input for int8 activations
    return activation, Int4WeightFakeQuantizeConfig(**kwargs)


def prepare_qat(model: torch.nn.Module, qat: QatSpec) -> None:
    """Swap in the fake-quantized layers (in place)."""
    problem = qat_problem(qat, gpu=None)
    if problem:  # validation refuses these; a spec that skipped it still fails by name
        raise UserError(f"`qat`: {problem}")
    try:
        from torchao.quantization import quantize_
        from torchao.quantization.qat import QATConfig
    except ImportError:
        raise UserError("`qat` needs torchao; install ft with the [train] extra") from None
    activation, weight = _fake_quantizers(qat)
    quantize_(model, QATConfig(activation_config=activation, weight_config=weight))
    if qat.quantize_embedding:
        # Activation fake quantization has no meaning for an embedding lookup.
        quantize_(model, QATConfig(weight_config=weight),
                  filter_fn=lambda module, _: isinstance(module, torch.nn.Embedding))
    log.info("qat: %s weights, %s activations fake-quantized", qat.weight_dtype,
             qat.activation_dtype or "full-precision")


def fake_quantized_layers(model: torch.nn.Module) -> int:
    from torchao.quantization.qat.embedding import FakeQuantizedEmbedding
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    return sum(isinstance(m, FakeQuantizedLinear | FakeQuantizedEmbedding)
               for m in model.modules())


def convert_qat(model: torch.nn.Module, qat: QatSpec) -> None:
    """Back to plain nn.Linear / nn.Embedding with the trained weights."""
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    quantize_(model, QATConfig(step="convert"))
    if qat.quantize_embedding:
        quantize_(model, QATConfig(step="convert"),
                  filter_fn=lambda module, _: isinstance(module, torch.nn.Embedding))


def _set_fake_quant(model: torch.nn.Module, enabled: bool) -> None:
    for module in model.modules():
        for name in ("activation_fake_quantizer", "weight_fake_quantizer"):
            quantizer = getattr(module, name, None)
            if quantizer is not None:
                quantizer.enabled = enabled


def qat_callbacks(qat: QatSpec | None, model: torch.nn.Module) -> list[TrainerCallback]:
    if qat is None or not qat.fake_quant_after_n_steps:
        return []
    return [DelayedFakeQuant(model, qat.fake_quant_after_n_steps)]


class DelayedFakeQuant(TrainerCallback):
    """`fake_quant_after_n_steps`: full precision for the first n optimizer steps."""

    def __init__(self, model: torch.nn.Module, after_steps: int):
        self.model, self.after_steps = model, after_steps

    def on_step_begin(self, args, state, control, **kwargs):
        _set_fake_quant(self.model, state.global_step >= self.after_steps)
