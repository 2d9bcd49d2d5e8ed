"""Load, validate and normalise a spec file: training keys + `launch:`.

Every problem is collected and raised at once as a SpecError (path, line, fix), so a user
fixes a spec in one round instead of one error per run.
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.spec.rules import cross_field_problems, ignored_settings
from orchestrator.spec.yaml_source import YamlPath, format_path, line_of, load_yaml_with_lines
from trainer.contract.errors import Problem, SpecError, UserError
from trainer.contract.launch import LaunchSpec
from trainer.contract.training import IGNORED_AXOLOTL_KEYS, UNSUPPORTED_AXOLOTL_KEYS, TrainingConfig


class SpecWarning(UserWarning):
    """A user setting that ft accepts but does not act on."""


@dataclass(frozen=True)
class Spec:
    training: TrainingConfig
    launch: LaunchSpec
    source: str  # the path as the user gave it (it appears in generated headers)
    effective_text: str  # the spec after CLI overrides; this is what travels with the job
    overrides: dict[str, Any] = field(default_factory=dict)  # launch values from CLI flags
    warnings: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.effective_text.encode()).hexdigest()


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None,
              for_launch: bool = False) -> Spec:
    """Read and validate a spec file; `overrides` are launch values from CLI flags.

    for_launch: the spec is about to be rendered, so its `launch:` values (or their
    defaults) fix the number of GPUs and the rules about it apply even without `launch:`.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{source}: no such spec file (create one with `ft init`)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read the spec: {exc}") from None
    return parse_spec(text, source, overrides, for_launch)


def parse_spec(text: str, source: str, overrides: dict[str, Any] | None = None,
               for_launch: bool = False) -> Spec:
    data, lines = load_yaml_with_lines(text, source)
    if not isinstance(data, dict):
        raise SpecError([Problem("", "the spec must be a mapping of keys to values", 1)], source)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    data = _apply_overrides(data, overrides)
    problems: list[Problem] = []
    notes: list[str] = []
    world_known = for_launch or "launch" in data
    launch_raw = data.get("launch") or {}
    data = {k: v for k, v in data.items() if k != "launch"}
    training_raw = _drop_axolotl_only_keys(data, lines, problems, notes)
    training = _validate(TrainingConfig, training_raw, (), lines, problems)
    launch = _validate(LaunchSpec, launch_raw, ("launch",), lines, problems)
    if training is not None and launch is not None:
        for rule_path, message in cross_field_problems(training, launch, world_known):
            problems.append(Problem(format_path(rule_path), message, line_of(lines, rule_path)))
    if problems:
        raise SpecError(problems, source)
    notes += ignored_settings(training)
    for note in notes:
        warnings.warn(note, SpecWarning, stacklevel=2)
    effective = dict(training_raw, launch=launch_raw)
    return Spec(training, launch, source, _dump_exactly(effective), overrides, notes)


def _dump_exactly(data: dict) -> str:
    """YAML that reads back as `data`: readable Unicode where PyYAML keeps it exact, escapes
    otherwise (it writes U+0085 raw inside quotes, where YAML folds it into a space)."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(text) == data:
        return text
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False)


def _apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    data = dict(data)
    launch = dict(data.get("launch") or {})
    launch.update(overrides)
    if launch:
        data["launch"] = launch
    return data


def _drop_axolotl_only_keys(data: dict, lines, problems: list[Problem], notes: list[str]):
    """Empty Axolotl-only keys ask for nothing: drop them. A set one is an error."""
    kept = {}
    for key, value in data.items():
        if key in UNSUPPORTED_AXOLOTL_KEYS:
            if value not in (None, False, "", [], {}):
                problems.append(Problem(key, "this Axolotl option is not supported by ft; "
                                        "remove it or leave it empty", line_of(lines, (key,))))
            continue
        if key in IGNORED_AXOLOTL_KEYS:
            if value not in (None, False, "", [], {}):
                notes.append(f"`{key}` is accepted for Axolotl compatibility and has no effect")
            continue
        kept[key] = value
    return kept


def _validate(model, raw: Any, prefix: YamlPath, lines, problems: list[Problem]):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            path = prefix + tuple(err["loc"])
            problems.append(Problem(format_path(path), _describe(model, err),
                                    line_of(lines, path)))
        return None


def _describe(model, err: dict) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(model, tuple(err["loc"]))
    if kind == "missing":
        return "is required"
    message = err["msg"].removeprefix("Value error, ")
    if kind.startswith("literal_error"):
        return f"{message} (got {err.get('input')!r})"
    return message


def _unknown_key_message(model, loc: YamlPath) -> str:
    known = _known_keys(model, loc)
    if model is TrainingConfig and len(loc) == 1:
        known.append("launch")
    key = str(loc[-1])
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if key in UNSUPPORTED_AXOLOTL_KEYS:
        return "this Axolotl option is not supported by ft; remove it"
    if hint:
        return f"unknown key; did you mean `{hint[0]}`?"
    return "unknown key (`ft schema` lists every key)"


def _known_keys(model, loc: YamlPath) -> list[str]:
    """Field names of the (nested) model that owns the last element of loc."""
    current = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            break
        current = _inner_model(info.annotation) or current
    return list(current.model_fields)


def _inner_model(annotation: Any):
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
