"""Writing tiny training specs and reading what a run left behind."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml

from tests.cli_runner import REPO

TINY_DATA = REPO / "examples" / "tiny" / "data"


def write_tiny_spec(tmp_path: Path, model_dir: Path, **overrides) -> Path:
    """The shipped tiny example, pointed at the session's tiny model and a fresh output dir."""
    spec = yaml.safe_load((REPO / "examples" / "tiny" / "tiny.yaml").read_text())
    spec["base_model"] = str(model_dir)
    for entry in spec["datasets"]:
        entry["path"] = str(TINY_DATA / Path(entry["path"]).name)
    spec["output_dir"] = str(tmp_path / "out")
    spec["dataset_prepared_path"] = str(tmp_path / "prepared")
    spec.update({"max_steps": 8, "save_steps": 4, "eval_steps": 4, "logging_steps": 1})
    launch = overrides.pop("launch", {})
    spec.update(overrides)
    spec["launch"].update(launch)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def shared_volumes(directory: Path) -> list[dict]:
    """`launch.volumes` that make `directory` storage every node shares: on isolated
    emulated nodes (as on a cluster) the output and cache are otherwise each node's own."""
    return [{"path": str(directory), "source": str(directory)}]


def summary(output_dir: Path) -> dict:
    return json.loads((output_dir / "ft-train-summary.json").read_text())


def train_losses(output_dir: Path) -> dict[int, float]:
    """{step: loss} of the training log."""
    return {entry["step"]: entry["loss"] for entry in summary(output_dir)["log_history"]
            if "loss" in entry}


def free_port() -> int:
    """A TCP port nothing listens on now (for a test's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
