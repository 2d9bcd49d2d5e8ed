"""User-facing errors: collected, located (file, YAML path, line), printed without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # dotted YAML path, e.g. "launch.nodes" or "datasets[0].type"
    message: str
    line: int | None = None

    def format(self, source: str | None) -> str:
        where = source or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        label = f"`{self.path}`" if self.path else "(top level)"
        return f"{where}: {label}: {self.message}"


class UserError(Exception):
    """A mistake the user can fix; the CLI prints it and exits 2, no traceback."""

    exit_code = 2


class SpecError(UserError):
    """Every problem found in one spec, reported at once."""

    def __init__(self, problems: list[Problem], source: str | None = None):
        # Reading order: by line, unlocated problems last.
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0))
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        head = f"{self.source or 'spec'}: {n} problem{'s' if n != 1 else ''} found"
        return "\n".join([head] + ["  " + p.format(self.source) for p in self.problems])
