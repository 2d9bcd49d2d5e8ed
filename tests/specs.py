"""Discovering the shipped example specs (every one must validate and render)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("dstack", "skypilot", "slurm")


def example_specs() -> list[str]:
    """Paths (relative to the repo root) of every spec under examples/."""
    found = []
    for path in sorted((REPO / "examples").rglob("*.y*ml")):
        if "data" in path.relative_to(REPO / "examples").parts:
            continue
        found.append(path.relative_to(REPO).as_posix())
    return found


def example_id(path: str) -> str:
    return Path(path).stem
