"""`model_config:` (Axolotl's `overrides_of_model_config`): values set on the model's config
before the weights load, e.g. Mixtral's `output_router_logits: true` (the router's
load-balancing loss joins the training loss).

As in Axolotl, each key is set on the loaded config. Unlike Axolotl, a key the config does
not have is an error naming it: a misspelt key would otherwise add a field no model code
reads. A multimodal config's text settings live in its text config; a key found only there
is set there. A mapping given for a mapping (`rope_scaling` / `rope_parameters`) is merged
into it: transformers 5 keeps `rope_theta` inside `rope_parameters`, which replacing the
whole mapping would drop.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.torch_free.errors import UserError

log = logging.getLogger("ft.model")


def apply_config_overrides(config: Any, overrides: dict[str, Any] | None) -> Any:
    """Sets every override on `config` (returned, changed in place)."""
    for key, value in (overrides or {}).items():
        target = _holder(config, key)
        current = getattr(target, key)
        if isinstance(current, dict) and isinstance(value, dict):
            value = {**current, **value}
        setattr(target, key, value)
        log.info("model_config: %s = %r", key, value)
    return config


def _holder(config: Any, key: str) -> Any:
    if hasattr(config, key):
        return config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text is not config and hasattr(text, key):
        return text
    known = sorted(k for k in config.to_dict() if not k.startswith("_"))
    raise UserError(f"`model_config.{key}`: the {type(config).__name__} of this model has no "
                    f"`{key}`; its keys are {', '.join(known)}")
