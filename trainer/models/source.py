"""Where the model and tokenizer come from: Axolotl's source keys -> from_pretrained calls.

`base_model` (+ `revision_of_model`) gives the weights, `base_model_config` the config.json,
`tokenizer_config` the tokenizer; `model_type` / `tokenizer_type` name the transformers
classes (default: the Auto classes). The revision pins the tokenizer too when it comes from
the same repository, so weights and vocabulary cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import transformers

from trainer.models.config_overrides import apply_config_overrides
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig


def model_class(cfg: TrainingConfig) -> Any:
    return _transformers_class("model_type", cfg.model_type or "AutoModelForCausalLM")


def tokenizer_class(cfg: TrainingConfig) -> Any:
    return _transformers_class("tokenizer_type", cfg.tokenizer_type or "AutoTokenizer")


def _transformers_class(key: str, name: str) -> Any:
    found = getattr(transformers, name, None)
    if not isinstance(found, type) or not hasattr(found, "from_pretrained"):
        raise UserError(f"`{key}: {name}` is not a transformers class with from_pretrained; "
                        "remove it to use the Auto class")
    return found


def model_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """Keyword arguments every from_pretrained of the model (and its config) takes."""
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision_of_model:
        kwargs["revision"] = cfg.revision_of_model
    return kwargs


def config_source(cfg: TrainingConfig) -> str:
    return cfg.base_model_config or cfg.base_model


def load_config(cfg: TrainingConfig) -> Any:
    """The model's config.json (from base_model_config when the spec gives one), with the
    spec's `model_config` overrides applied."""
    kwargs = model_kwargs(cfg) if not cfg.base_model_config else \
        {"trust_remote_code": cfg.trust_remote_code}
    config = transformers.AutoConfig.from_pretrained(config_source(cfg), **kwargs)
    return apply_config_overrides(config, cfg.overrides_of_model_config)


def needs_own_config(cfg: TrainingConfig) -> bool:
    """Whether from_pretrained must be given load_config's config instead of reading the
    model's own config.json."""
    return bool(cfg.base_model_config or cfg.overrides_of_model_config)


def base_config_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """`config=` for a from_pretrained of the base model: training, merging and inference
    then build the same model (`model_config` overrides included)."""
    return {"config": load_config(cfg)} if needs_own_config(cfg) else {}


def tokenizer_source_kwargs(cfg: TrainingConfig) -> tuple[str, dict[str, Any]]:
    source = cfg.tokenizer_config or cfg.base_model
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision_of_model and source == cfg.base_model:
        kwargs["revision"] = cfg.revision_of_model
    if cfg.tokenizer_use_fast is not None:
        kwargs["use_fast"] = cfg.tokenizer_use_fast
    if cfg.tokenizer_legacy is not None:
        kwargs["legacy"] = cfg.tokenizer_legacy
    return source, kwargs
