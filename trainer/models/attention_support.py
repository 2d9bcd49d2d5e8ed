"""Keep the chosen attention kernel to one the model's architecture has.

ft's default kernel is sdpa (or ft_varlen, sdpa's per-sample flash path, for packed rows on
a GPU). Some architectures have no sdpa attention: Gemma2 caps its attention logits
(softcapping), which sdpa cannot do, and transformers refuses to load it with sdpa (a raw
ValueError). When the spec named no kernel, such a model gets one it has: flex_attention on a
GPU (it applies the softcap and keeps packed samples apart), else eager, which builds the
same block-diagonal mask from the packed rows' position_ids (trainer/data/collate.py). An
explicit `attn_implementation: sdpa` on such a model is the user's error, said by name.
gpt-oss is another: its learned attention sinks have no sdpa path, and ft_varlen (sdpa's
flash kernel) would drop them silently, so it falls back the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.kernels.attention_varlen import NAME as VARLEN_ATTN
from trainer.models.source import load_config, model_class
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.model")
_SDPA_BASED = ("sdpa", VARLEN_ATTN)


def architecture_of(cfg: TrainingConfig) -> Any:
    """The concrete model class that will load (the Auto class resolved through the config)."""
    cls = model_class(cfg)
    if not cls.__name__.startswith("Auto"):
        return cls
    try:
        return cls._model_mapping[type(load_config(cfg))]
    except (KeyError, ValueError):  # remote code or an unmapped config: the Auto class says
        return cls


def fit_to_model(cfg: TrainingConfig, choice: str, on_gpu: bool) -> str:
    """`choice` when the architecture runs it, else the kernel it has (see module doc)."""
    if choice not in _SDPA_BASED:
        return choice
    arch = architecture_of(cfg)
    if getattr(arch, "_supports_sdpa", True):
        return choice
    name = arch.__name__
    if cfg.requested_attention == "sdpa":
        raise UserError(f"`attn_implementation: sdpa`: {name} has no sdpa attention; use "
                        "`attn_implementation: flex_attention` (GPU) or `flash_attention_2`, "
                        "or remove the key to let ft choose (eager on a CPU)")
    fallback = "flex_attention" if on_gpu and getattr(arch, "_supports_flex_attn", False) \
        else "eager"
    log.warning("%s has no sdpa attention: using %s%s", name, fallback,
                " (packed samples stay apart by their position_ids)" if cfg.sample_packing
                else "")
    return fallback



