"""Load YAML while remembering the line of every key, so errors can point at it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from trainer.torch_free.errors import Problem, SpecError

YamlPath = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """("datasets", 0, "type") -> "datasets[0].type"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that also rejects duplicate keys (a silent overwrite hides mistakes)."""


def _walk(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int], problems: list[Problem]):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = path + (key,)
            if key in seen:
                problems.append(
                    Problem(format_path(child), "key appears twice; keep one",
                            key_node.start_mark.line + 1)
                )
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, problems)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, problems)


def load_yaml_with_lines(text: str, source: str | None = None) -> tuple[Any, dict[YamlPath, int]]:
    """Parse text; return (data, {path: line}). Syntax errors become a SpecError with a line."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem("", f"not valid YAML: {reason}", line)], source) from None
    lines: dict[YamlPath, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, problems)
    if problems:
        raise SpecError(problems, source)
    return data, lines


def line_of(lines: dict[YamlPath, int], path: Sequence[str | int]) -> int | None:
    """Line of the deepest existing prefix of path (a missing key points at its parent)."""
    path = tuple(path)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
