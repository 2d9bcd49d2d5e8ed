"""The backend protocol: every registered backend keeps it, and a new backend is one package
plus one registry line (tests/support/toyq/: options, template, storage rule, job id; driven
through the real CLI)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator.backends.base import Backend
from orchestrator.backends.rendezvous import resolve_rendezvous
from tests.cli_runner import REPO, run_ft
from tests.train_helpers import free_port, shared_volumes, write_tiny_spec
from trainer.torch_free.errors import UserError

TINY = "examples/tiny/tiny.yaml"
TOY_PACKAGE = REPO / "tests" / "support" / "toyq"
TOY_TEMPLATE = "toyq.sh.j2"  # goes to templates/, named after the backend


@pytest.mark.parametrize("name", backends.names())
def test_every_backend_implements_the_protocol(name):
    backend = backends.get(name)
    assert isinstance(backend, Backend) and backend.name == name
    assert backend.example.startswith("ft "), "each backend gives `ft launch --help` an example"
    assert backend.env_prefixes and all(
        variable.startswith(backend.env_prefixes) for variable in (
            backend.node_vars.rank, backend.node_vars.nnodes, backend.node_vars.job_id,
            *backend.node_vars.detect))


@pytest.mark.parametrize("name", backends.names())
def test_emulated_variables_map_back_to_the_same_world(name):
    """What `--emulate NAME` gives node 1 of 2 is exactly what `ft node` reads back."""
    backend = backends.get(name)
    environ = backend.emulated_env(rank=1, nodes=2, gpus_per_node=4, job_name="job")
    world = resolve_rendezvous(backend, environ, master_port=29500, default_nproc=1)
    assert (world.node_rank, world.nnodes, world.nproc_per_node) == (1, 2, 4)
    assert world.master_addr in ("127.0.0.1", "localhost")
    assert backends.detect(environ) == name


def test_detection_prefers_the_most_specific_backend():
    local = backends.get("local").emulated_env(0, 2, 0, "job")
    inside_slurm = {**backends.get("slurm").emulated_env(0, 1, 0, "alloc"), **local}
    assert backends.detect(inside_slurm) == "local"


@pytest.mark.parametrize("name", backends.render_names())
def test_dry_run_prints_the_argv_that_launch_runs(name, fake, monkeypatch, tmp_path):
    """The command `--dry-run` shows is, word for word, the argv the submit runs."""
    from orchestrator.cli.options import load_for_cli
    from orchestrator.jobs.submit import submit
    from orchestrator.process import Completed

    example = "examples/llama-3-70b-qlora-fsdp.yaml"  # secrets, managed SkyPilot job
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_TOKEN", "planted-not-a-token")
    shown = run_ft("launch", example, "--backend", name, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    printed = shown.stdout.rstrip().splitlines()[-1]
    backend = backends.get(name)
    monkeypatch.setattr(backend, "check_ready", lambda: None)  # tested per backend
    runner = fake({(): Completed((), 1, "", "stop here")})  # answers every command
    spec = load_for_cli(Path(example), for_launch=True)
    with pytest.raises(UserError):
        submit(backend, backend.render(spec), Path(".ft/rendered") / spec.launch.name, spec)
    assert shlex.join(runner.calls[-1]) == printed


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def _ft_with_toy_backend(tmp_path: Path) -> Path:
    """A copy of ft whose only changes are the new package (its template in templates/)
    and its registry line."""
    copy = tmp_path / "ft-copy"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "tests", "bench", "__pycache__", "*.egg-info", "outputs",
        ".ft", "model"))
    before_files = _files(copy)
    shutil.copytree(TOY_PACKAGE, copy / "orchestrator" / "backends" / "toyq",
                    ignore=shutil.ignore_patterns("__pycache__", TOY_TEMPLATE))
    shutil.copy(TOY_PACKAGE / TOY_TEMPLATE, copy / "templates" / TOY_TEMPLATE)
    added = _files(copy) - before_files
    assert {path.split("/")[0] for path in added} == {"orchestrator", "templates"}
    assert all(path.startswith("orchestrator/backends/toyq/") for path in added
               if path != f"templates/{TOY_TEMPLATE}")
    registry = copy / "orchestrator" / "backend_registry.py"
    before = registry.read_text()
    anchor = '    "slurm": "orchestrator.backends.slurm",\n'
    line = '    "toyq": "orchestrator.backends.toyq",'
    registry.write_text(before.replace(anchor, f"{anchor}{line}\n"))
    assert set(registry.read_text().splitlines()) - set(before.splitlines()) == {line}
    return copy


def _toy_ft(copy: Path, *args: str, cwd: Path, env: dict | None = None):
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(copy)}
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=env)


def _fake_tool(bin_dir: Path, name: str, body: str) -> None:
    """A real executable standing in for the queue's command (records its argv)."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> "{bin_dir}/calls.log"\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_a_new_backend_is_one_module_and_one_registry_line(tmp_path, tiny_model_dir):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "toyq-submit", "echo 77")
    _fake_tool(bin_dir, "toyq-stat", 'for id in "$@"; do echo "$id RUNNING"; done')
    _fake_tool(bin_dir, "toyq-kill", "echo killed")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "FT_STATE_DIR": str(tmp_path / "state")}
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    copy = _ft_with_toy_backend(tmp_path)

    help_text = _toy_ft(copy, "launch", "--help", cwd=tmp_path, env=env).stdout
    assert "toyq" in help_text and "ft launch spec.yaml --backend toyq" in help_text
    rendered = _toy_ft(copy, "render", str(spec), "--backend", "toyq", "-o", "out", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    script = (tmp_path / "out" / "tiny.toyq.sh").read_text()
    assert "ft node .ft/tiny.yaml --backend toyq --spec-sha256" in script
    assert '"$TOYQ_LEADER"' in script  # the explicit launch line, in the queue's variables

    launched = _toy_ft(copy, "launch", str(spec), "--backend", "toyq", cwd=tmp_path, env=env)
    assert launched.returncode == 0, launched.stderr
    assert "submitted toyq:77 (tiny)" in launched.stdout
    assert "toyq-submit --nodes 1 .ft/rendered/tiny/tiny.toyq.sh" in \
        (bin_dir / "calls.log").read_text()
    listed = _toy_ft(copy, "list", cwd=tmp_path, env=env)
    assert "toyq:77" in listed.stdout and "RUNNING" in listed.stdout
    assert "killed" in _toy_ft(copy, "cancel", "toyq:77", cwd=tmp_path, env=env).stdout

    node = _toy_ft(copy, "node", str(spec), "--dry-run", cwd=tmp_path, env={
        **env, **{"TOYQ_JOB": "7", "TOYQ_LEADER": "10.1.2.3", "TOYQ_INDEX": "1",
                  "TOYQ_SIZE": "2", "TOYQ_GPUS": "8"}})
    assert node.returncode == 0, node.stderr
    assert "ft node: backend toyq" in node.stderr  # detected, not passed
    assert "--nnodes 2 --node-rank 1 --master-addr 10.1.2.3" in node.stderr

    _toy_options_storage_and_emulation(copy, tmp_path, tiny_model_dir, env)

    # Emulated: two toyq nodes here, a real gloo rendezvous through `ft node`; a toy queue
    # shares no directory by itself, so the pre-flight's storage check needs a volume.
    shared = tmp_path / "doctor"
    doctor_spec = _toy_spec(tmp_path, tiny_model_dir, "doctor", volumes=shared_volumes(shared))
    doctor = _toy_ft(copy, "doctor", str(doctor_spec), "--nodes", "2", "--emulate", "toyq",
                     "--master-port", str(free_port()), cwd=tmp_path, env=env)
    assert doctor.returncode == 0, doctor.stdout[-2000:] + doctor.stderr[-2000:]
    assert "ft node: backend toyq" in doctor.stdout
    assert "ft pre-flight (nodes): 2 node(s), 2 rank(s)" in doctor.stdout


def _toy_spec(tmp_path: Path, model_dir: Path, name: str, **launch) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    return write_tiny_spec(directory, model_dir, launch=launch)


def _toy_options_storage_and_emulation(copy: Path, tmp_path: Path, model_dir: Path,
                                       env: dict) -> None:
    """What the backend's own package brings: `launch.toyq:` (its options model, in the
    schema, validated with the file and line of a mistake), its template, its storage rule
    (refused at render, validate and emulation alike) and its job id on emulated nodes."""
    schema = json.loads(_toy_ft(copy, "schema", cwd=tmp_path).stdout)
    assert schema["$defs"]["LaunchSpec"]["properties"]["toyq"] == {"$ref": "#/$defs/ToyqOptions"}

    chosen = _toy_spec(tmp_path, model_dir, "options", toyq={"queue": "gpu", "priority": 3})
    out = chosen.parent / "out-files"
    rendered = _toy_ft(copy, "render", str(chosen), "--backend", "toyq", "-o", str(out),
                       cwd=chosen.parent)
    assert rendered.returncode == 0, rendered.stderr
    script = out / "tiny.toyq.sh"
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n# Generated by ft") and os.access(script, os.X_OK)
    assert "# Submit: toyq-submit --queue gpu --priority 3 --nodes 1 ./tiny.toyq.sh" in text
    assert "exec ft node .ft/tiny.yaml --backend toyq --spec-sha256" in text
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    launched = _toy_ft(copy, "launch", str(chosen), "--backend", "toyq", cwd=chosen.parent,
                       env=env)
    assert launched.returncode == 0, launched.stderr
    assert "toyq-submit --queue gpu --priority 3 --nodes 1 .ft/rendered/tiny/tiny.toyq.sh" in \
        (Path(env["PATH"].split(os.pathsep)[0]) / "calls.log").read_text()

    typo = _toy_spec(tmp_path, model_dir, "typo", toyq={"queu": "gpu", "priority": 12})
    checked = _toy_ft(copy, "validate", str(typo), "--backend", "toyq", cwd=typo.parent)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    lines = typo.read_text().splitlines()
    for key, words in (("queu", "unknown key; did you mean `queue`?"),
                       ("priority", "less than or equal to 9")):
        line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith(f"{key}:"))
        assert f"{typo}:{line}: `launch.toyq.{key}`: " in checked.stderr, checked.stderr
        assert words in checked.stderr

    # Its storage rule: a multi-node checkpoint directory must be on a toyq volume.
    unshared = _toy_spec(tmp_path, model_dir, "unshared", nodes=2)
    for args in (("render", str(unshared), "--backend", "toyq"),
                 ("validate", str(unshared), "--backend", "toyq"),
                 ("launch", str(unshared), "--backend", "local", "--emulate", "toyq",
                  "--dry-run")):
        refused = _toy_ft(copy, *args, cwd=unshared.parent, env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "`output_dir`" in refused.stderr and "mount a toyq volume" in refused.stderr
        assert "Traceback" not in refused.stderr
    shared = _toy_spec(tmp_path, model_dir, "shared", nodes=2,
                       volumes=[{"name": "toyq-vol", "path": str(tmp_path)}])
    emulated = _toy_ft(copy, "launch", str(shared), "--backend", "local", "--emulate", "toyq",
                       "--dry-run", "--no-isolate", cwd=shared.parent, env=env)
    assert emulated.returncode == 0, emulated.stderr
    job_ids = re.findall(r"TOYQ_JOB=(\S+)", emulated.stdout)
    assert len(job_ids) == 2 and len(set(job_ids)) == 1  # one job id on every node
    rendered = _toy_ft(copy, "render", str(shared), "--backend", "toyq", "-o", "r",
                       cwd=shared.parent)
    assert rendered.returncode == 0, rendered.stderr
    assert f"# toyq mounts its volume at {tmp_path}\n" in \
        (shared.parent / "r" / "tiny.toyq.sh").read_text()
