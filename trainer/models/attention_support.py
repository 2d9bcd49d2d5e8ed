"""The attention kernel the model's class can run: ft's default (`sdpa`) is not every
architecture's. gpt-oss adds learned attention sinks that PyTorch's sdpa cannot take, so
its class has no sdpa path; asked for nothing, such a model gets flex_attention on a GPU
(which handles the sinks) and eager on the CPU; asked for sdpa by name, it is an error that
names the key instead of transformers' traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from trainer.kernels import attention_varlen
from trainer.models.source import load_config, model_class
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.model")


def runnable_attention(cfg: TrainingConfig, choice: str) -> str:
    """`choice` (load.choose_attention's), or what this model class runs instead. ft's
    packed-row kernel is sdpa's flash path too, so it falls back alike (it would drop the
    sinks silently)."""
    if choice not in ("sdpa", attention_varlen.NAME):
        return choice
    cls = _concrete_class(cfg)
    if cls is None or getattr(cls, "_supports_sdpa", True):
        return choice
    if cfg.requested_attention == "sdpa":
        raise UserError(f"{cls.__name__} has no sdpa attention (`sdp_attention` / "
                        "`attn_implementation: sdpa`); use `flex_attention: true`, "
                        "`flash_attention: true` or `eager_attention: true`")
    fallback = "flex_attention" if torch.cuda.is_available() and \
        getattr(cls, "_supports_flex_attn", False) else "eager"
    log.info("%s has no sdpa attention: using %s", cls.__name__, fallback)
    return fallback


def _concrete_class(cfg: TrainingConfig) -> Any | None:
    cls = model_class(cfg)
    mapping = getattr(cls, "_model_mapping", None)
    if mapping is None:
        return cls
    try:
        return mapping[type(load_config(cfg))]
    except (KeyError, ValueError):  # remote code or an unknown architecture: keep the choice
        return None
