"""Axolotl's `pretraining_dataset:` -> ft's `datasets:` of `type: completion`.

Axolotl streams these sources and trains on every token of their text column. ft trains on
every token of a completion dataset the same way, but tokenizes it before training (cached
in `dataset_prepared_path`) instead of streaming it, and says so once: for a web-scale corpus,
take a slice (`split: train[:1%]`, `data_files`, `shards`).
"""

from __future__ import annotations

from typing import Any

from orchestrator.spec.key_hints import closest_key
from orchestrator.spec.yaml_source import YamlPath, format_path, line_of
from trainer.torch_free.errors import Problem

# pretraining_dataset entry key -> datasets entry key (None: handled below).
_SAME = ("path", "name", "split", "data_files", "ds_type", "revision", "shards")
_KNOWN = {*_SAME, "type", "text_column", "skip", "trust_remote_code"}
NOTE = ("`pretraining_dataset` is read as `type: completion` data: every token of its text "
        "column is trained, as in Axolotl, but ft tokenizes it before training (cached in "
        "`dataset_prepared_path`) instead of streaming it; for a very large corpus train on a "
        "slice (`split: train[:1%]`, `data_files`, `shards`)")


def convert(data: dict[str, Any], lines: dict[YamlPath, int], problems: list[Problem],
            notes: list[str], unknown: list[Problem]) -> dict[str, Any]:
    """`unknown` gets the keys of an entry that neither ft nor Axolotl knows: the caller
    warns about them (or refuses them under --strict) with every other unknown key."""
    sources = data.get("pretraining_dataset")
    if sources is None:
        return data
    data = dict(data)
    del data["pretraining_dataset"]
    if data.get("datasets"):
        problems.append(_problem(("pretraining_dataset",), "choose one of "
                                 "`pretraining_dataset` and `datasets`", lines))
        return data
    entries = []
    for index, source in enumerate(sources if isinstance(sources, list) else [sources]):
        entry = _entry(source, ("pretraining_dataset", index), lines, problems, unknown)
        if entry is not None:
            entries.append(entry)
    data["datasets"] = entries
    notes.append(NOTE)
    return data


def _entry(source: Any, path: YamlPath, lines, problems: list[Problem],
           unknown: list[Problem]) -> dict | None:
    if isinstance(source, str):
        source = {"path": source}
    if not isinstance(source, dict) or "path" not in source:
        problems.append(_problem(path, "each entry needs a `path` (a hub dataset or files)",
                                 lines))
        return None
    entry = {key: source[key] for key in _SAME if source.get(key) is not None}
    entry["type"] = "completion"
    entry["field"] = source.get("text_column") or "text"
    kind = source.get("type")
    if kind not in (None, "pretrain", "completion"):
        problems.append(_problem(path + ("type",), f"`type: {kind}` is not a pretraining "
                                 "format ft knows; use `pretrain` (plain text)", lines))
    if source.get("skip"):
        problems.append(_problem(path + ("skip",), "skipping rows (`skip`) is not supported; "
                                 "take a slice with `split: train[N:]`", lines))
    for key in sorted(set(source) - _KNOWN):
        hint = closest_key(key, _KNOWN)
        unknown.append(_problem(path + (key,), f"unknown key; did you mean `{hint}`?" if hint
                                else "unknown key of a pretraining_dataset entry", lines))
    return entry


def _problem(path: YamlPath, message: str, lines) -> Problem:
    return Problem(format_path(path), message, line_of(lines, path))
