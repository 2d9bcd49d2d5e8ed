"""The rendered files are accepted by dstack's and SkyPilot's own parsers (their PyPI
packages, each in its own venv), and what they parse is what the spec asked for."""

from __future__ import annotations

import pytest

from orchestrator.backends import get
from orchestrator.shipping.bundle import ship
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import load_spec
from tests.specs import REPO, example_specs


@pytest.fixture(scope="module")
def specs():
    return {path: load_spec(REPO / path, for_launch=True) for path in example_specs()}


def _texts(specs, backend):
    out = {}
    for path, spec in specs.items():
        (text,) = get(backend).render(spec).files.values()
        out[path] = text
    return out


def test_dstack_accepts_every_example(specs, dstack_validator):
    results = dstack_validator(_texts(specs, "dstack"))
    for path, result in results.items():
        assert result.error is None, f"{path}: {result.error}"
        spec, parsed = specs[path], result.parsed
        launch = spec.launch
        assert parsed["type"] == "task"
        assert parsed["name"] == launch.name
        assert parsed["nodes"] == launch.nodes
        for secret in launch.secrets:  # a bare name: dstack reads the value at submit time
            assert parsed["env"][secret] == {"key": secret}
        for name, value in launch.env.items():
            assert parsed["env"][name] == value
        gpu = parsed["resources"]["gpu"]
        if launch.gpus_per_node:
            assert gpu["count"] == {"min": launch.gpus_per_node, "max": launch.gpus_per_node}
            assert gpu["name"] == [launch.gpu.split(":")[0]]
        assert parsed["spot_policy"] == ("spot" if launch.spot else "on-demand")
        if launch.max_duration:
            assert parsed["max_duration"] == duration_seconds(launch.max_duration)
        assert parsed["stop_duration"] == duration_seconds(launch.stop_grace) + 60
        retry = launch.retry
        events = (["interruption"] if retry.on_preemption else []) + \
            (["error"] if retry.on_error else [])
        assert (parsed.get("retry") or {}).get("on_events", []) == events


def test_dstack_rejects_what_it_should(dstack_validator):
    """Guards the check above against a validator that accepts anything."""
    result = dstack_validator({"bad": "type: task\nnodez: 2\ncommands: [echo]\n"})["bad"]
    assert result.error and "nodez" in result.error


def test_skypilot_accepts_every_example(specs, skypilot_validator):
    results = skypilot_validator(_texts(specs, "skypilot"))
    for path, result in results.items():
        assert result.error is None, f"{path}: {result.error}"
        spec, parsed = specs[path], result.parsed
        launch = spec.launch
        assert parsed["name"] == launch.name
        assert parsed["num_nodes"] == launch.nodes
        assert sorted(parsed["managed_secrets"]) == sorted(launch.secrets)
        assert parsed["inline_secrets"] == []  # no secret value is ever in the file
        for name, value in launch.env.items():
            assert parsed["envs"][name] == value
        (resources,) = parsed["resources"]
        if launch.gpus_per_node:
            assert resources["accelerators"] == {launch.gpu.split(":")[0]:
                                                 launch.gpus_per_node}
        assert resources["use_spot"] == launch.spot
        if launch.skypilot.cloud:
            assert resources["cloud"].lower() == launch.skypilot.cloud
        assert "ft node .ft/" in parsed["run"]


@pytest.fixture(scope="module")
def shipped_tiny(tmp_path_factory):
    """The tiny example rendered for dstack and SkyPilot, and the bundle `ft launch` writes
    beside it (one wheel build serves both: their ship plans are the same)."""
    spec = load_spec(REPO / "examples" / "tiny" / "tiny.yaml", for_launch=True)
    out = tmp_path_factory.mktemp("rendered")
    rendered = {backend: get(backend).render(spec) for backend in ("dstack", "skypilot")}
    assert rendered["dstack"].ship == rendered["skypilot"].ship
    ship(rendered["dstack"].ship, out)
    texts = {backend: next(iter(r.files.values())) for backend, r in rendered.items()}
    return spec, out, texts


def _the_wheel(directory):
    (wheel,) = directory.glob("*.whl")
    assert wheel.name.startswith("ft_finetune-"), wheel
    return wheel


def test_dstack_files_point_at_the_shipped_wheel_and_spec(shipped_tiny, dstack_validator):
    spec, out, texts = shipped_tiny
    result = dstack_validator({"tiny": texts["dstack"]})["tiny"]
    assert result.error is None, result.error
    files = {m["path"]: out / m["local_path"] for m in result.parsed["files"]}
    # Local paths are relative to the rendered file's directory (dstack's rule), container
    # paths to the job's working directory, where the commands read them.
    assert files[".ft/tiny.yaml"].read_text() == spec.effective_text
    _the_wheel(files[".ft/tiny"] / "wheels")
    assert (files[".ft/tiny"] / "install_ft.py").is_file()
    (command,) = result.parsed["commands"]
    assert command.startswith("python3 .ft/tiny/install_ft.py .ft/tiny/wheels ")
    assert " -- ft node .ft/tiny.yaml --backend dstack " in command


def test_skypilot_workdir_is_the_bundle_with_the_wheel_and_spec(shipped_tiny,
                                                                skypilot_validator):
    spec, out, texts = shipped_tiny
    result = skypilot_validator({"tiny": texts["skypilot"]})["tiny"]
    assert result.error is None, result.error
    workdir = out / result.parsed["workdir"]
    assert (workdir / ".ft" / "tiny.yaml").read_text() == spec.effective_text
    _the_wheel(workdir / ".ft" / "tiny" / "wheels")
    assert "python3 .ft/tiny/install_ft.py .ft/tiny/wheels " in result.parsed["run"]
    # `ft launch` passes the bundle beside the rendered file as --workdir.
    argv = get("skypilot").render(spec).submit_command(str(out))
    assert argv[argv.index("--workdir") + 1] == str(workdir)
