"""Axolotl's spellings -> ft's, before validation: empty means unset, aliases are renamed,
top-level `fsdp_version` moves into `fsdp_config`, `pretraining_dataset` becomes completion
`datasets`, and Axolotl-only keys are refused or warned about (orchestrator/spec/
axolotl_keys.py says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec import axolotl_keys as keys
from orchestrator.spec import axolotl_warned as warned
from orchestrator.spec import pretraining
from orchestrator.spec.bnb_kwargs import lift_bnb_kwargs
from orchestrator.spec.moe_rules import plugin_experts_kernel
from orchestrator.spec.yaml_source import YamlPath, format_path, line_of
from trainer.torch_free.deepspeed_files import axolotl_refusal
from trainer.torch_free.errors import Problem

# Axolotl keys that become another part of the spec (see _fsdp_version, pretraining.py).
MOVED = {"fsdp_version": "fsdp_config.fsdp_version",
         "pretraining_dataset": "datasets (type: completion)"}


@dataclass
class Normalised:
    data: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unknown: list[Problem] = field(default_factory=list)  # keys no one knows (warned)


def normalise(data: dict[str, Any], lines: dict[YamlPath, int]) -> Normalised:
    """`lines` gains entries for renamed keys, so later errors still point at the user's line."""
    out = Normalised({})
    data = _without_empty(data)
    data = _renamed(data, (), keys.ALIASES, lines, out)
    data = _fsdp_version(data, lines, out)
    data = pretraining.convert(data, lines, out.problems, out.notes, out.unknown)
    out.problems += [_problem(path, message, lines) for path, message in
                     lift_bnb_kwargs(data, lines)]
    out.data = _answered(data, (), keys.REFUSED, warned.WARNED, lines, out)
    for section in ("datasets", "test_datasets"):
        if isinstance(out.data.get(section), list):
            out.data[section] = [
                _answered(entry, (section, i), keys.DATASET_REFUSED, warned.DATASET_WARNED,
                          lines, out) if isinstance(entry, dict) else entry
                for i, entry in enumerate(out.data[section])]
    _deepspeed_name(out.data, lines, out)
    _plugins(out.data, lines, out)
    out.notes += plugin_experts_kernel(out.data)
    return out


def _plugins(data: dict, lines, out: Normalised) -> None:
    """Axolotl plugins ft does not implement get the answer of the keys they bring."""
    plugins = data.get("plugins")
    if not isinstance(plugins, list):
        return
    kept = []
    for index, plugin in enumerate(plugins):
        key = keys.PLUGIN_ANSWERS.get(str(plugin).rsplit(".", 1)[-1]) \
            if str(plugin).startswith("axolotl.integrations.") else None
        if key in keys.REFUSED:
            out.problems.append(_problem(("plugins", index), f"{plugin}: {keys.REFUSED[key]}",
                                         lines))
        elif key in warned.WARNED:
            out.notes.append(f"`plugins`: {plugin}: {warned.WARNED[key]}")
        else:
            kept.append(plugin)
    data["plugins"] = kept


# Sections whose keys are spec keys too (free-form mappings such as lr_scheduler_kwargs keep
# their None values: there None may be a real argument).
_KEYED_SECTIONS = ("fsdp_config", "special_tokens")
_ENTRY_LISTS = ("datasets", "test_datasets", "pretraining_dataset")


def _without_empty(data: dict[str, Any]) -> dict[str, Any]:
    """`key:` with no value is unset, as in Axolotl: at the top level, in the keyed sections
    and in each data source entry."""
    out = {k: v for k, v in data.items() if v is not None}
    for key in _KEYED_SECTIONS:
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if v is not None}
            if not out[key]:  # a section of empty keys asks for nothing (no FSDP, say)
                del out[key]
    for key in _ENTRY_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [{k: v for k, v in entry.items() if v is not None}
                        if isinstance(entry, dict) else entry for entry in out[key]]
    return out


def _renamed(data: dict, prefix: YamlPath, aliases: dict[str, str], lines, out) -> dict:
    renamed: dict[str, Any] = {}
    for key, value in data.items():
        target = aliases.get(key, key)
        if target != key and target in data:
            out.problems.append(_problem(prefix + (key,), f"`{key}` is Axolotl's other name "
                                         f"for `{target}`, which is set too; keep one", lines))
            continue
        if target != key:
            lines[prefix + (target,)] = line_of(lines, prefix + (key,))
        renamed[target] = value
    return renamed


def _fsdp_version(data: dict, lines, out: Normalised) -> dict:
    """Axolotl's FSDP2 spelling puts `fsdp_version` next to `fsdp_config`, not inside it."""
    if "fsdp_version" not in data:
        return data
    data = dict(data)
    version = data.pop("fsdp_version")
    config = data.get("fsdp_config")
    if config is None and not data.get("fsdp"):
        out.problems.append(_problem(("fsdp_version",), "`fsdp_version` without `fsdp_config` "
                                     "asks for no sharding; add `fsdp_config:` or remove it",
                                     lines))
        return data
    config = dict(config or {})
    inner = config.get("fsdp_version", config.get("version"))
    if inner is not None and inner != version:
        out.problems.append(_problem(("fsdp_version",), f"`fsdp_version: {version}` disagrees "
                                     f"with `fsdp_config.fsdp_version: {inner}`; keep one",
                                     lines))
        return data
    config["fsdp_version"] = version
    data["fsdp_config"] = config
    return data


def _answered(data: dict, prefix: YamlPath, refused: dict[str, str], warned: dict[str, str],
              lines, out: Normalised) -> dict:
    """Drops every key with an Axolotl-only answer, recording its error or warning."""
    kept: dict[str, Any] = {}
    for key, value in data.items():
        path = prefix + (key,)
        if key in refused:
            if not keys.asks_for_nothing(value) and not keys.matches_ft(key, value):
                out.problems.append(_problem(path, refused[key] + "; remove it or leave it "
                                             "empty", lines))
        elif key in warned:
            if not keys.asks_for_nothing(value) and not keys.matches_ft(key, value):
                out.notes.append(f"`{format_path(path)}`: {warned[key]}")
        else:
            kept[key] = value
    return kept


def _deepspeed_name(data: dict, lines, out: Normalised) -> None:
    value = data.get("deepspeed")
    reason = axolotl_refusal(value) if isinstance(value, str) else None
    if reason:
        out.problems.append(_problem(("deepspeed",), f"{value}: {reason}", lines))


def _problem(path: YamlPath, message: str, lines) -> Problem:
    return Problem(format_path(path), message, line_of(lines, path))
