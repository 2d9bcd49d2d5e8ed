"""Every shipped cluster profile loads and renders; its NCCL env lands in every backend's file."""

from __future__ import annotations

import ast

import pytest
import yaml

from orchestrator.backends import get, render_names
from orchestrator.clusters import DEFAULT_ENV, available_profiles, load_profile
from orchestrator.spec.load import parse_spec
from trainer.torch_free.errors import UserError

SPEC = """\
base_model: ./model
datasets: [{path: d.jsonl, type: alpaca}]
adapter: lora
lora_target_linear: true
output_dir: /checkpoints/out
launch: {name: prof, nodes: 2, gpus_per_node: 8, gpu: H100, cluster: %s, volumes: [
  {path: /checkpoints, source: /fsx/checkpoints, backends: [dstack]},
  {path: /checkpoints, source: "s3://ft-checkpoints", mode: mount, backends: [skypilot]},
  {path: /checkpoints, name: ft-checkpoints, backends: [modal]}]}
"""


def test_the_promised_profiles_ship():
    assert {"infiniband", "roce", "aws-efa", "tcp", "auto"} <= set(available_profiles())


@pytest.mark.parametrize("name", available_profiles())
def test_profile_renders_on_every_backend(name):
    profile = load_profile(name)
    assert profile.name == name
    spec = parse_spec(SPEC % name, "spec.yaml", for_launch=True)
    expected = {**DEFAULT_ENV, **profile.env}
    for backend in render_names():
        (text,) = get(backend).render(spec).files.values()
        if backend == "slurm":
            for key, value in expected.items():
                assert f"export {key}={value}\n" in text or f"export {key}='{value}'\n" in text
        elif backend == "dstack":
            assert [f"{k}={v}" for k, v in expected.items()] == yaml.safe_load(text)["env"]
        elif backend == "modal":  # a Python app: its ENV dict, every function's `env=`
            assert _python_constant(text, "ENV") == expected
        else:
            assert yaml.safe_load(text)["envs"] == expected


def _python_constant(source: str, name: str):
    """The literal assigned to NAME at the top level of a rendered Python file."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets
                                             if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no top-level {name} = ... in the rendered file")


def test_profile_by_path_and_unknown_name(tmp_path):
    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\ndescription: test\nfabric: roce\n"
                      "env: {NCCL_IB_GID_INDEX: '5'}\n")
    assert load_profile(str(custom)).env == {"NCCL_IB_GID_INDEX": "5"}
    with pytest.raises(UserError, match="no cluster profile 'nope'; use one of .*infiniband"):
        load_profile("nope")
    custom.write_text("name: bad\nfabric: carrier-pigeon\n")
    with pytest.raises(UserError, match="invalid cluster profile"):
        load_profile(str(custom))
