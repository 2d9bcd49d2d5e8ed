"""Load, validate and normalise a spec file: training keys + `launch:`.

Every problem is collected and raised at once as a SpecError (path, line, fix), so a user
fixes a spec in one round instead of one error per run.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.spec.attention_notes import hub_kernel_notes
from orchestrator.spec.axolotl_compat import normalise
from orchestrator.spec.launch_schema import LaunchSpec, launch_model
from orchestrator.spec.rules import cross_field_problems, ignored_settings
from orchestrator.spec.unknown_keys import (
    ignored_warning,
    stopping,
    unknown_key_message,
    user_path,
    without_unknown_keys,
)
from orchestrator.spec.yaml_source import YamlPath, format_path, line_of, load_yaml_with_lines
from trainer.torch_free.errors import Problem, SpecError, UserError
from trainer.torch_free.training import TrainingConfig


class SpecWarning(UserWarning):
    """A user setting that ft accepts but does not act on."""


class LocatedSpecWarning(SpecWarning):
    """A SpecWarning whose text already names the file and line (`spec.yaml:12: ...`)."""


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
              for_launch: bool = False, strict: bool = False) -> Spec:
    """Read and validate a spec file; `overrides` are launch values from CLI flags.

    for_launch: the spec is about to be rendered, so its `launch:` values (or their
    defaults) fix the number of GPUs and the rules about it apply even without `launch:`.
    strict: a training key neither ft nor Axolotl knows is an error, not a warning.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{source}: no such spec file (create one with `ft init`)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{source}: cannot read the spec: {exc}") from None
    return parse_spec(text, source, overrides, for_launch, strict)


def parse_spec(text: str, source: str, overrides: dict[str, Any] | None = None,
               for_launch: bool = False, strict: bool = False) -> Spec:
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
    axolotl = normalise(data, lines)
    problems += axolotl.problems
    notes += axolotl.notes
    training_raw, unknown = without_unknown_keys(TrainingConfig, axolotl.data, lines)
    unknown = sorted(axolotl.unknown + unknown, key=lambda p: (p.line is None, p.line or 0))
    errors = stopping(unknown, strict)
    problems += errors
    located = [ignored_warning(problem, source) for problem in unknown if problem not in errors]
    training = _validate(TrainingConfig, training_raw, (), lines, problems)
    launch = _validate(launch_model(), launch_raw, ("launch",), lines, problems)
    if training is not None and launch is not None:
        for rule_path, message in cross_field_problems(training, launch, world_known):
            problems.append(Problem(format_path(rule_path), message, line_of(lines, rule_path)))
    for note in located:  # said even when other problems stop the spec
        warnings.warn(LocatedSpecWarning(note), stacklevel=2)
    if problems:
        raise SpecError(problems, source)
    notes += ignored_settings(training) + hub_kernel_notes(training)
    for note in notes:
        warnings.warn(note, SpecWarning, stacklevel=2)
    effective = dict(training_raw, launch=launch_raw)
    return Spec(training, launch, source, _dump_exactly(effective), overrides,
                located + notes)


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


def _validate(model, raw: Any, prefix: YamlPath, lines, problems: list[Problem]):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        by_path: dict[YamlPath, list[dict]] = {}
        for err in exc.errors():
            by_path.setdefault(prefix + user_path(err["loc"]), []).append(err)
        for path, errs in by_path.items():
            problems.append(Problem(format_path(path), _describe(model, errs),
                                    line_of(lines, path)))
        return None


def _describe(model, errs: list[dict]) -> str:
    """One message per YAML path, however many union members pydantic tried."""
    first = errs[0]
    if first["type"] == "extra_forbidden":
        return unknown_key_message(model, user_path(first["loc"]))
    if first["type"] == "missing":
        return "is required"
    if len(errs) == 1 and first["type"] not in _EXPECTED \
            and not first["type"].startswith("literal_error"):
        return first["msg"].removeprefix("Value error, ")
    wanted = list(dict.fromkeys(_expected(err) for err in errs))
    return f"expected {' or '.join(wanted)} (got {first.get('input')!r})"


def _expected(err: dict) -> str:
    kind = err["type"]
    if kind.startswith("literal_error"):
        return "one of " + err["ctx"]["expected"]
    return _EXPECTED.get(kind, err["msg"].removeprefix("Value error, ").lower())


_EXPECTED = {"bool_parsing": "true/false", "bool_type": "true/false", "int_parsing": "a whole "
             "number", "int_type": "a whole number", "int_from_float": "a whole number",
             "float_parsing": "a number", "float_type": "a number", "string_type": "text",
             "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping"}
