"""Axolotl's `qat:` block (quantization-aware training with torchao fake quantization).

Torch-free: `ft validate` checks the dtype pair here; trainer/models/qat.py applies it. The
pairs ft trains are Axolotl's own mapping to torchao's fake quantizers (weights int4 or fp8,
activations int8, fp8 or none). NVFP4 and MXFP4 quantize the forward's matmul inputs for
the FP4 tensor cores only Blackwell GPUs have; ternary (BitNet) QAT is Axolotl's own code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

QuantDtype = Literal["int4", "int8", "float8_e4m3fn", "nvfp4", "mxfp4", "ternary"]
_SPELLINGS = {"fp8": "float8_e4m3fn", "float8": "float8_e4m3fn"}

# (weight, activation) pairs ft fake-quantizes; None: activations stay in full precision.
TRAINED_PAIRS = {("int4", None), ("int4", "int8"), ("int4", "float8_e4m3fn"),
                 ("float8_e4m3fn", "float8_e4m3fn")}
FP4 = ("nvfp4", "mxfp4")
# GPU names (as `launch.gpu` spells them) of the Blackwell generation: FP4 tensor cores.
BLACKWELL = ("B100", "B200", "B300", "GB200", "GB300", "RTX5090", "RTX5080", "RTXPRO6000")


class QatSpec(BaseModel):
    """`qat:`: fake quantization of the linear layers (and the embedding) while training,
    so the model learns weights that survive the later real quantization."""

    model_config = ConfigDict(extra="forbid")

    weight_dtype: QuantDtype = Field("int8", description="int4 or float8_e4m3fn (fp8).")
    activation_dtype: QuantDtype | None = Field(
        None, description="int8 or float8_e4m3fn, or none for weight-only fake quantization.")
    group_size: int | None = Field(32, ge=1, description="Elements per int4 weight group.")
    quantize_embedding: bool | None = Field(
        False, description="Fake-quantize the input embedding's weights too.")
    fake_quant_after_n_steps: int | None = Field(
        None, ge=0, description="Train in full precision for this many steps first.")

    @field_validator("weight_dtype", "activation_dtype", mode="before")
    @classmethod
    def _axolotl_spellings(cls, value: Any) -> Any:
        return _SPELLINGS.get(value, value)


def qat_problem(qat: QatSpec, gpu: str | None) -> str | None:
    """Why this `qat:` cannot train (None: it can). `gpu`: `launch.gpu` when given."""
    pair = (qat.weight_dtype, qat.activation_dtype)
    if qat.weight_dtype in FP4 or qat.activation_dtype in FP4:
        fmt = "NVFP4" if "nvfp4" in pair else "MXFP4"
        model = (gpu or "").split(":")[0].upper().replace(" ", "").replace("-", "")
        where = (f"`launch.gpu: {gpu}` is not one" if gpu and model not in BLACKWELL
                 else "ft has not run it on one yet")
        return (f"{fmt} QAT is not supported: it needs a Blackwell GPU (B200, GB200, B300, "
                f"RTX 50xx) for its FP4 matmuls and {where}; ft's QAT fake-quantizes int4 "
                "weights (activations int8, fp8 or full precision) or fp8 weights and "
                "activations")
    if "ternary" in pair:
        return ("ternary (BitNet) QAT is not supported: it is Axolotl's own code; ft's QAT "
                "fake-quantizes int4 or fp8 weights")
    if pair not in TRAINED_PAIRS:
        act = qat.activation_dtype or "full-precision"
        return (f"`weight_dtype: {qat.weight_dtype}` with {act} activations is not a pair "
                "torchao's QAT supports (Axolotl refuses it too); use weight int4 with "
                "activations int8, float8_e4m3fn or none, or float8_e4m3fn for both")
    return None
