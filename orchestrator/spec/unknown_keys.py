"""Keys neither ft nor Axolotl knows, in the training part of a spec.

Axolotl ignores such a key without a word, so one typo inside an Axolotl config would make ft
refuse a file Axolotl runs. ft ignores it too, but says so: a warning that names the key, its
file and line, and the real key it is a near-typo of. `--strict` (ft validate / ft launch)
makes each one an error instead, for CI and for users who want a typo to stop the job.
`launch:` is ft's own section, never an Axolotl file's: its unknown keys stay errors.

The unknown keys are the ones the pydantic models reject as `extra_forbidden`, so whatever a
model accepts (a before-validator's other spelling, an alias) is known by construction.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.spec import axolotl_keys, axolotl_warned
from orchestrator.spec.axolotl_compat import MOVED
from orchestrator.spec.key_hints import closest_key
from orchestrator.spec.yaml_source import YamlPath, format_path, line_of
from trainer.torch_free.errors import Problem
from trainer.torch_free.training import DatasetSpec, TrainingConfig

# Removing a key can let a union take another member, which may reject other keys: a few
# passes reach the fixed point (each removes at least one key).
_MAX_PASSES = 8


def without_unknown_keys(model: type[BaseModel], raw: Any,
                         lines: dict[YamlPath, int]) -> tuple[Any, list[Problem]]:
    """`raw` less every key `model` rejects as unknown (at any depth), and one Problem per
    removed key: its YAML path, its line and the "did you mean" hint."""
    found: list[Problem] = []
    for _ in range(_MAX_PASSES):
        paths = _unknown_paths(model, raw)
        if not paths:
            break
        raw = copy.deepcopy(raw) if not found else raw
        for path in paths:
            written = _pop(raw, path)
            if written is not None:
                found.append(Problem(format_path(written), unknown_key_message(model, path),
                                     line_of(lines, written)))
    return raw, sorted(found, key=lambda p: (p.line is None, p.line or 0))


def stopping(unknown: list[Problem], strict: bool) -> list[Problem]:
    """The unknown keys that are errors: all under --strict; otherwise a near-typo of
    `launch` (ignoring it would drop the whole launch section, ft's own and strict)."""
    return [problem for problem in unknown if strict or (
        "." not in problem.path and closest_key(problem.path, ["launch"]) == "launch")]


def ignored_warning(problem: Problem, source: str) -> str:
    """The warning for an unknown key that is ignored: file, line, key, hint, and the way to
    make it an error."""
    joint = " I" if problem.message.endswith("?") else "; i"
    return (f"{problem.format(source)}{joint}gnored, as Axolotl does (`ft validate --strict` "
            "makes it an error)")


def _unknown_paths(model: type[BaseModel], raw: Any) -> list[YamlPath]:
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return list(dict.fromkeys(user_path(err["loc"]) for err in exc.errors()
                                  if err["type"] == "extra_forbidden"))
    return []


def _pop(raw: Any, path: YamlPath) -> YamlPath | None:
    """Remove the key at `path`; the path as the user wrote it (a model's before-validator
    may have renamed the key: FsdpConfig reads `fsdp_x` as `x`), None where it is not there."""
    parent = raw
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return None
    key = path[-1]
    for spelling in (key, f"fsdp_{key}"):
        if isinstance(parent, dict) and spelling in parent:
            del parent[spelling]
            return path[:-1] + (spelling,)
    return None


def user_path(loc: tuple) -> YamlPath:
    """pydantic's loc names each member of a union it tried (`bool`, `literal['a','b']`);
    those are not the user's keys, so they are dropped."""
    return tuple(part for part in loc if isinstance(part, int) or not _is_type_tag(part))


def _is_type_tag(part: str) -> bool:
    return "[" in part or part.startswith("function-") or part in _TYPE_NAMES


_TYPE_NAMES = {"bool", "str", "int", "float", "dict", "list", "none", "tuple"}


def unknown_key_message(model: type[BaseModel], loc: YamlPath) -> str:
    owner = _owner_model(model, loc)
    known = list(owner.model_fields)
    # A typo of an Axolotl-only key deserves that key as the hint, with its own answer.
    if owner is TrainingConfig:
        known += ["launch", *axolotl_keys.ALIASES, *axolotl_keys.REFUSED, *axolotl_warned.WARNED,
                  *MOVED]
    elif owner is DatasetSpec:
        known += [*axolotl_keys.DATASET_REFUSED, *axolotl_warned.DATASET_WARNED]
    hint = closest_key(str(loc[-1]), known)
    if hint:
        return f"unknown key; did you mean `{hint}`?"
    return "unknown key, neither ft's nor Axolotl's (`ft schema` lists every key)"


def _owner_model(model: type[BaseModel], loc: YamlPath) -> type[BaseModel]:
    """The (nested) model that owns the last element of loc."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            break
        current = _inner_model(info.annotation) or current
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
