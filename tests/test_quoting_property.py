"""Property: no user string can break out of its quoting in a rendered file.

Arbitrary env values, paths, package specs and extra sbatch lines are rendered, then the
real shell (bash) runs the generated script with recording stand-ins for srun/ft/python,
and the values the programs receive must equal the values in the spec.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.backends import get
from orchestrator.shipping.bundle import ship
from orchestrator.spec.load import parse_spec
from trainer.torch_free.errors import SpecError

# Anything a YAML file can carry in a string, except NUL (not representable in env/argv).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
               max_size=40)
LINE = TEXT.filter(lambda s: "\n" not in s and "\r" not in s)
PATH_COMPONENT = st.text(st.characters(exclude_categories=("Cs",),
                                       exclude_characters="\x00/\n\r"), min_size=1,
                         max_size=20).filter(lambda s: s not in (".", ".."))
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

RECORDER = """#!/bin/bash
# Records how it was called: argv NUL-separated, then the environment.
printf '%s\\0' "$@" > "$REC/$(basename "$0").argv"
env -0 > "$REC/$(basename "$0").env"
"""


def _spec_text(env: dict, extra: dict | None = None) -> str:
    launch = {"name": "quoting", "nodes": 2, "gpus_per_node": 1, "gpu": "H100", "env": env,
              "cluster": "tcp", **(extra or {})}
    spec = {"base_model": "./model", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
            "launch": launch}
    return yaml.safe_dump(spec)  # escapes everything non-ASCII, so the value is exact


def _shims(tmp: Path) -> dict[str, str]:
    bin_dir, rec = tmp / "bin", tmp / "rec"
    bin_dir.mkdir(exist_ok=True)
    rec.mkdir(exist_ok=True)
    for tool in ("srun", "ft", "python"):
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    # SLURM_JOB_ID: sbatch always sets it in the batch shell (the attempt header reads it).
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "REC": str(rec), "HOME": str(tmp),
            "SLURM_JOB_ID": "42"}


def _exact(path: Path) -> str:
    """File text without newline translation (read_text would turn \r into \n)."""
    return path.read_bytes().decode()


def _read_argv(tmp: Path, tool: str) -> list[str]:
    return _exact(tmp / "rec" / f"{tool}.argv").split("\0")[:-1]


def _read_env(tmp: Path, tool: str) -> dict[str, str]:
    items = _exact(tmp / "rec" / f"{tool}.env").split("\0")[:-1]
    return dict(item.split("=", 1) for item in items)


@SETTINGS
@given(env_value=TEXT, workdir=PATH_COMPONENT, package=LINE.filter(bool), extra_line=LINE)
@example(env_value="\x85", workdir="0", package="0", extra_line="")  # NEL: YAML folds it raw
def test_sbatch_passes_values_verbatim(tmp_path_factory, env_value, workdir, package,
                                       extra_line):
    tmp = tmp_path_factory.mktemp("sbatch")
    (tmp / workdir).mkdir()
    extra = {"install": {"method": "pip", "package": package},
             "slurm": {"workdir": str(tmp / workdir), "extra_sbatch": [f"--comment={extra_line}"]}}
    spec = parse_spec(_spec_text({"USER_VALUE": env_value}, extra), "q.yaml", for_launch=True)
    (text,) = get("slurm").render(spec).files.values()
    result = subprocess.run(["bash", "-c", text, "sbatch"], env=_shims(tmp), cwd=tmp,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _read_env(tmp, "srun")["USER_VALUE"] == env_value
    assert _read_argv(tmp, "python")[-1] == package
    written = _exact(tmp / workdir / ".ft" / "quoting.yaml")
    assert written == spec.effective_text
    assert yaml.safe_load(written)["launch"]["env"]["USER_VALUE"] == env_value
    assert _read_argv(tmp, "srun")[-7:] == ["ft", "node", ".ft/quoting.yaml", "--backend",
                                            "slurm", "--spec-sha256", spec.sha256]


def _run_commands(commands: list[str], tmp: Path) -> None:
    for command in commands:
        result = subprocess.run(["bash", "-c", command], env=_shims(tmp), cwd=tmp,
                                capture_output=True, text=True)
        assert result.returncode == 0, (command, result.stderr)


@SETTINGS
@given(env_value=TEXT, volume_name=TEXT.filter(bool), mount=PATH_COMPONENT)
def test_dstack_yaml_carries_values_verbatim(tmp_path_factory, env_value, volume_name, mount):
    tmp = tmp_path_factory.mktemp("dstack")
    # One node: a network volume attaches to one instance (backends/dstack/storage.py).
    extra = {"volumes": [{"name": volume_name, "path": f"/{mount}"}], "nodes": 1,
             "install": {"method": "pip", "package": env_value or "ft"}}
    try:
        spec = parse_spec(_spec_text({"USER_VALUE": env_value}, extra), "q.yaml",
                          for_launch=True)
    except SpecError as exc:  # newlines are refused in single-line fields: that is fine
        assert "single line" in str(exc)
        return
    rendered = get("dstack").render(spec)
    (text,) = rendered.files.values()
    task = yaml.safe_load(text)
    env = dict(item.split("=", 1) for item in task["env"] if "=" in item)
    assert env["USER_VALUE"] == env_value
    assert task["volumes"] == [{"name": volume_name, "path": f"/{mount}"}]
    # What `ft launch` ships, placed the way dstack's `files:` (local:container) places it.
    ship(rendered.ship, tmp / "rendered")
    job = tmp / "job"
    for mapping in task["files"]:
        local, container = mapping.split(":")
        (job / container).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "rendered" / local, job / container)
    _run_commands(task["commands"], job)
    assert _exact(job / ".ft" / "quoting.yaml") == spec.effective_text
    assert _read_argv(job, "ft")[:4] == ["node", ".ft/quoting.yaml", "--backend", "dstack"]


@SETTINGS
@given(env_value=TEXT, source=TEXT.filter(bool))
def test_skypilot_yaml_carries_values_verbatim(tmp_path_factory, env_value, source):
    tmp = tmp_path_factory.mktemp("sky")
    # Copy mode takes any folder of a bucket (a mount takes a whole bucket); one node, since
    # the default output_dir is on no bucket (backends/skypilot/storage.py).
    extra = {"volumes": [{"source": f"s3://{source}", "path": "/data", "mode": "copy"}],
             "nodes": 1, "install": {"method": "image"}}
    try:
        spec = parse_spec(_spec_text({"USER_VALUE": env_value}, extra), "q.yaml",
                          for_launch=True)
    except SpecError as exc:
        assert "single line" in str(exc)
        return
    rendered = get("skypilot").render(spec)
    (text,) = rendered.files.values()
    task = yaml.safe_load(text)
    assert task["envs"]["USER_VALUE"] == env_value
    assert task["file_mounts"]["/data"]["source"] == f"s3://{source}"
    # The run step runs in the synced workdir: the bundle `ft launch` writes.
    workdir = ship(rendered.ship, tmp)
    assert workdir == tmp / task["workdir"]
    result = subprocess.run(["bash", "-c", task["run"]], env=_shims(tmp), cwd=workdir,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _exact(workdir / ".ft" / "quoting.yaml") == spec.effective_text


@settings(max_examples=100, deadline=None)
@given(name=TEXT)
def test_job_name_is_either_refused_or_safe(name):
    try:
        # One node: the default relative output_dir is no multi-node checkpoint storage.
        spec = parse_spec(_spec_text({}, {"name": name, "nodes": 1}), "q.yaml",
                          for_launch=True)
    except SpecError as exc:
        assert "launch.name" in str(exc)
        return
    assert spec.launch.name == name
    (sbatch,) = get("slurm").render(spec).files.values()
    assert f"#SBATCH --job-name={name}\n" in sbatch
    for backend in ("dstack", "skypilot"):
        (text,) = get(backend).render(spec).files.values()
        assert yaml.safe_load(text)["name"] == name


def test_recorder_sees_environment(tmp_path):
    """The stand-ins themselves work (guards the property tests against vacuous passes)."""
    env = _shims(tmp_path) | {"PROBE": "a b'c"}
    subprocess.run(["srun", "x y"], env=env, check=True)
    assert _read_argv(tmp_path, "srun") == ["x y"]
    assert _read_env(tmp_path, "srun")["PROBE"] == "a b'c"
    assert os.access(tmp_path / "bin" / "ft", os.X_OK)
