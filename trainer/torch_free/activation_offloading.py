"""What `activation_offloading` (and `gradient_checkpointing: offload | unsloth`) asks for.

Torch-free: validation and the trainer both read it. Axolotl's semantics: with an adapter,
offloading replaces recompute (the adapter's activations are small; recomputing would keep
the offloaded tensors pinned for nothing); a full fine-tune keeps recomputing each decoder
layer and offloads only what recompute keeps, the layer inputs, because copying every
activation of a full model would outrun the PCIe link.
"""

from __future__ import annotations

from typing import Literal

# Every tensor the forward saves for backward goes to CPU memory; nothing is recomputed.
ALL_SAVED = "all_saved"
# Every decoder layer is recomputed; its input (what recompute keeps) goes to CPU memory.
LAYER_INPUTS = "layer_inputs"

OffloadMode = Literal["all_saved", "layer_inputs"]


def offload_mode(cfg) -> OffloadMode | None:
    """None when nothing is offloaded."""
    asked = cfg.activation_offloading
    if not asked and cfg.gradient_checkpointing == "offload":
        asked = True  # Axolotl: `offload` is the old spelling of `activation_offloading: true`
    if not asked and cfg.gradient_checkpointing == "unsloth":
        asked = "hidden_states"  # Unsloth's checkpointing: recompute, inputs in CPU memory
    if asked in (True, "legacy"):
        return ALL_SAVED if cfg.adapter else LAYER_INPUTS
    if asked == "hidden_states":
        return LAYER_INPUTS
    return None
