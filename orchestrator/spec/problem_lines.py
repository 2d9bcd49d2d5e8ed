"""The line in the user's file of a problem found after loading (e.g. by a backend's checks,
which see the validated Spec, not the YAML it came from)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.spec.yaml_source import line_of, load_yaml_with_lines
from trainer.torch_free.errors import Problem, SpecError

if TYPE_CHECKING:
    from orchestrator.spec.load import Spec


def located(spec: Spec, found: list[Problem]) -> list[Problem]:
    """The line of each problem in the user's file, where the file can be read again."""
    try:
        _, lines = load_yaml_with_lines(Path(spec.source).read_text(), spec.source)
    except (OSError, UnicodeDecodeError, SpecError):  # gone, or not the spec's YAML
        return found
    return [problem if problem.line else replace(
        problem, line=line_of(lines, path_tuple(problem.path))) for problem in found]


def path_tuple(path: str) -> tuple[str | int, ...]:
    """`launch.volumes[0].source` -> ("launch", "volumes", 0, "source")."""
    parts: list[str | int] = []
    for part in path.replace("]", "").split("."):
        name, *indexes = part.split("[")
        parts += [name, *(int(index) for index in indexes)]
    return tuple(parts)
