"""Axolotl's `bnb_config_kwargs` (extra BitsAndBytesConfig arguments): the two ft has as keys
of its own are read from there, as Axolotl's MoE examples write them
(`bnb_config_kwargs: {bnb_4bit_use_double_quant: true}`); any other entry stays refused
(orchestrator/spec/axolotl_keys.py)."""

from __future__ import annotations

from typing import Any

KEY = "bnb_config_kwargs"
LIFTED = ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant")


def lift_bnb_kwargs(data: dict[str, Any], lines: dict) -> list[tuple[tuple[str, ...], str]]:
    """Move the entries ft has as top-level keys out of `bnb_config_kwargs` (in place);
    returns (path, message) for a value that disagrees with the top-level one."""
    kwargs = data.get(KEY)
    if not isinstance(kwargs, dict):
        return []
    problems = []
    rest = dict(kwargs)
    for name in LIFTED:
        if name not in rest:
            continue
        value = rest.pop(name)
        if name in data and data[name] != value:
            problems.append(((KEY, name), f"`{KEY}.{name}: {value}` disagrees with "
                             f"`{name}: {data[name]}`; keep one"))
            continue
        data[name] = value
        lines[(name,)] = lines.get((KEY, name), lines.get((KEY,)))
    if rest:
        data[KEY] = rest
    else:
        del data[KEY]
    return problems
