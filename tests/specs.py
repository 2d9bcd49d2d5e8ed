"""Discovering the shipped example specs (every one must validate and render)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.backends import render_names

REPO = Path(__file__).resolve().parent.parent
BACKENDS = tuple(render_names())  # every backend that renders, from the one registry
# Example x backend pairs the backend refuses, and a phrase of its reason
# (tests/test_render_golden.py checks each refusal; every other pair has golden files).
REFUSED = {("multi-dataset-chat", "modal"): "takes all 8 GPUs of its host"}


# A multi-node job's checkpoints on storage every node sees, each backend's own kind at one
# path (docs/storage.md): a spec's `output_dir` and `launch.volumes`.
SHARED_OUTPUT_DIR = "/checkpoints/out"
SHARED_VOLUMES = [
    {"path": "/checkpoints", "source": "/fsx/checkpoints", "backends": ["dstack"]},
    {"path": "/checkpoints", "source": "s3://ft-checkpoints", "backends": ["skypilot"]},
    {"path": "/checkpoints", "name": "ft-checkpoints", "backends": ["modal"]},
]


def renders(spec: str, backend: str) -> bool:
    return (example_id(spec), backend) not in REFUSED


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
