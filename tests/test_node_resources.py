"""One resources model: the same spec asks every backend for the same node, each in its own
syntax, and a value a backend cannot express is named in a note, never dropped silently."""

from __future__ import annotations

import re

import pytest
import yaml

from orchestrator.backends import get
from orchestrator.backends.node_resources import CPUS_PER_GPU
from orchestrator.spec.load import parse_spec
from tests.specs import SHARED_OUTPUT_DIR, SHARED_VOLUMES

TRAINING = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "adapter": "lora", "lora_target_linear": True, "output_dir": SHARED_OUTPUT_DIR}


def _render(**launch: object) -> dict:
    text = yaml.safe_dump({**TRAINING, "launch": {"nodes": 2, "gpu": "H100",
                                                  "volumes": SHARED_VOLUMES, **launch}})
    spec = parse_spec(text, "spec.yaml", for_launch=True)
    out = {}
    for backend in ("dstack", "skypilot", "slurm"):
        rendered = get(backend).render(spec)
        (text,) = rendered.files.values()
        out[backend] = (text, rendered.notes)
    return out


def _asked(out: dict) -> dict[str, dict]:
    dstack = yaml.safe_load(out["dstack"][0])["resources"]
    (sky,) = [yaml.safe_load(out["skypilot"][0])["resources"]]
    sbatch = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)$", out["slurm"][0], re.M))
    return {
        "cpus": {"dstack": dstack["cpu"].split(":")[-1].removesuffix(".."),
                 "skypilot": sky["cpus"].removesuffix("+"), "slurm": sbatch["cpus-per-task"]},
        "memory": {"dstack": dstack.get("memory", "").removesuffix("GB.."),
                   "skypilot": str(sky.get("memory", "")).removesuffix("+"),
                   "slurm": sbatch["mem"].removesuffix("G")},
        "disk": {"dstack": dstack["disk"].removesuffix("GB.."),
                 "skypilot": str(sky["disk_size"])},
    }


@pytest.mark.parametrize("gpus", [1, 8])
def test_derived_cpus_are_the_same_everywhere(gpus):
    asked = _asked(_render(gpus_per_node=gpus))
    assert set(asked["cpus"].values()) == {str(CPUS_PER_GPU * gpus)}, asked["cpus"]
    # No memory asked for: dstack and SkyPilot set no minimum, Slurm takes the whole node.
    assert asked["memory"] == {"dstack": "", "skypilot": "", "slurm": "0"}


def test_what_the_spec_sets_wins_on_every_backend():
    out = _render(gpus_per_node=8, cpus_per_node=12, memory="512GB", disk="300GB",
                  shm_size="32GB")
    asked = _asked(out)
    assert set(asked["cpus"].values()) == {"12"}
    assert set(asked["memory"].values()) == {"512"}
    assert set(asked["disk"].values()) == {"300"}
    assert yaml.safe_load(out["dstack"][0])["resources"]["shm_size"] == "32GB"
    # What a backend cannot express is said, not dropped.
    assert any("`launch.shm_size` is not rendered" in n for n in out["skypilot"][1])
    assert any("`launch.shm_size` is not rendered" in n for n in out["slurm"][1])
    assert any("`launch.disk` is not rendered" in n for n in out["slurm"][1])


def test_slurm_options_still_override_for_slurm_only():
    out = _render(gpus_per_node=8, slurm={"cpus_per_task": 20, "mem": "100G"})
    asked = _asked(out)
    assert asked["cpus"] == {"dstack": "64", "skypilot": "64", "slurm": "20"}
    assert asked["memory"]["slurm"] == "100"


def test_readme_states_the_cpu_rule():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "spec.md").read_text()
    assert (f"cpus_per_node: null           # default: {CPUS_PER_GPU} per GPU, asked the same "
            "way on dstack, SkyPilot and Slurm") in page
