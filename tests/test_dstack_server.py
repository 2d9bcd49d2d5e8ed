"""`ft launch --backend dstack` against a real `dstack server` 0.22.5 (SQLite, no compute).

As a new user would: the server configures the CLI's project, `ft launch` renders the task,
ships the bundle and runs `dstack apply`; the server plans it (files uploaded, image
accepted) and, with no fleet to run on, fails it with "no fleets". What the server stored
for the run's `files:` is read back from its own database and must be the shipped wheel and
spec, byte for byte, even from a git repo whose .gitignore covers them.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.train_helpers import free_port

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dstack_home(dstack_server_python, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A running server and the environment (HOME, PATH with `dstack`) that reaches it."""
    home = tmp_path_factory.mktemp("dstack-home")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    # The venv's own console script names the interpreter by its pre-rename build path.
    (bin_dir / "dstack").write_text(
        f"#!/bin/sh\nexec {shlex.quote(str(dstack_server_python))} -c 'import sys; from "
        "dstack._internal.cli.main import main; sys.argv[0] = \"dstack\"; sys.exit(main())' "
        '"$@"\n')
    (bin_dir / "dstack").chmod(0o755)
    env = {**os.environ, "HOME": str(home), "DSTACK_CLI_DISABLE_UPDATE_CHECK": "1",
           "DO_NOT_TRACK": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    log = (home / "server.log").open("w")
    server = subprocess.Popen([str(bin_dir / "dstack"), "server", "--host", "127.0.0.1",
                               "--port", str(free_port())], env=env, cwd=home, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: (home / ".dstack" / "config.yml").is_file() and server.poll() is None,
                  120, lambda: (home / "server.log").read_text())
        yield env
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for(ready, timeout_s: float, explain) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, explain()
        time.sleep(0.5)


def _ft(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=180)


def _dstack_run(env: dict[str, str], cwd: Path, name: str) -> dict:
    """The server's record of run `name`, as `dstack ps -a --json` shows it."""
    ps = subprocess.run(["dstack", "ps", "-a", "--json"], env=env, capture_output=True,
                        text=True, cwd=cwd)
    return next(r for r in json.loads(ps.stdout)["runs"] if r["run_spec"]["run_name"] == name)


def _archive(home: Path, archive_id: str) -> dict[str, bytes]:
    """The files of one uploaded `files:` archive, as the server stored it (names start with
    the uploaded file's or directory's own name)."""
    with sqlite3.connect(home / ".dstack" / "server" / "data" / "sqlite.db") as db:
        (blob,) = db.execute("SELECT blob FROM file_archives WHERE id = ?",
                             (archive_id.replace("-", ""),)).fetchone()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_launch_ships_and_the_server_plans_it_until_no_fleets(dstack_home, tmp_path):
    env = dstack_home
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    # A user's repo ignoring what ft writes: dstack honours .gitignore when it archives.
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / ".gitignore").write_text("/.ft/\nwheels/\n*.whl\n")
    spec = (REPO / "examples" / "tiny" / "tiny.yaml").read_text()
    (work / "examples" / "tiny.yaml").write_text(spec)

    launched = _ft(env, work, "launch", "examples/tiny.yaml", "--backend", "dstack")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "submitted dstack:tiny" in launched.stdout

    def run() -> dict:
        return _dstack_run(env, work, "tiny")

    _wait_for(lambda: run()["status"] in ("failed", "terminated"), 120, run)
    status = _ft(env, work, "status", "dstack:tiny")
    assert "No matching fleet found" in status.stdout, status.stdout

    # The server holds the run's files: the spec and .ft/tiny/ (wheel + installer).
    archives = {a["path"]: a["id"] for a in run()["run_spec"]["file_archives"]}
    assert sorted(archives) == [".ft/tiny", ".ft/tiny.yaml"], archives
    bundle = work / ".ft" / "rendered" / "tiny" / "tiny.ship"
    shipped_spec = _archive(Path(env["HOME"]), archives[".ft/tiny.yaml"])
    assert shipped_spec == {"tiny.yaml": (bundle / ".ft" / "tiny.yaml").read_bytes()}
    ft_dir = _archive(Path(env["HOME"]), archives[".ft/tiny"])
    (wheel,) = (bundle / ".ft" / "tiny" / "wheels").glob("*.whl")
    assert ft_dir[f"tiny/wheels/{wheel.name}"] == wheel.read_bytes()
    assert ft_dir["tiny/install_ft.py"] == (REPO / "orchestrator" / "shipping" /
                                       "install_ft.py").read_bytes()


SHIPPED = sorted(p.name for p in (REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", SHIPPED)
def test_the_server_plans_each_shipped_example_with_its_files_and_storage(
        example, dstack_home, tmp_path):
    """Every example as a user submits it: the server takes the task ft renders (image,
    resources, retry, storage as volumes) and, with no fleet to run on, stops at "no
    fleets"; what it stored is what ft rendered: the same volumes and every shipped file."""
    import yaml

    env = {**dstack_home, "HF_TOKEN": "hf_not-a-real-token", "WANDB_API_KEY": "not-a-key"}
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "examples" / example).write_text((REPO / "examples" / example).read_text())
    launched = _ft(env, work, "launch", f"examples/{example}", "--backend", "dstack")
    launch = yaml.safe_load((work / "examples" / example).read_text())["launch"]
    name = launch["name"]
    dstack_volumes = [v for v in launch.get("volumes", [])
                      if "dstack" in v.get("backends", ["dstack"])]
    if launch.get("image"):
        # The server reads a named image's config from its registry, and this machine
        # reaches no container registry: that check is the server's, the fix is ft's hint.
        assert launched.returncode == 2, launched.stdout + launched.stderr
        assert f"Error pulling configuration for image '{launch['image']}'" in launched.stderr
        assert "To fix: the image must be pullable" in launched.stderr
        return
    if any(v.get("name") for v in dstack_volumes):
        # A network volume must exist before a run mounts it; this server has no backend
        # to create one on. The server refuses the plan; ft says how to create it.
        assert launched.returncode == 2, launched.stdout + launched.stderr
        assert "Volume ['ft-checkpoints'] not found" in launched.stderr
        assert "To fix: create the network volume ['ft-checkpoints'] first" in launched.stderr
        return
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert f"submitted dstack:{name}" in launched.stdout, launched.stdout

    def run() -> dict:
        return _dstack_run(env, work, name)

    _wait_for(lambda: run()["status"] in ("failed", "terminated"), 120, run)
    status = _ft(env, work, "status", f"dstack:{name}")
    # The fleets a spec names do not exist on this server; with none named, none matches.
    no_compute = ("Failed to use specified fleets" if launch.get("dstack", {}).get("fleets")
                  else "No matching fleet found")
    assert no_compute in status.stdout, status.stdout

    (rendered,) = (work / ".ft" / "rendered" / name).glob("*.dstack.yml")
    task = yaml.safe_load(rendered.read_text())
    stored = run()["run_spec"]
    # The server fills in defaults (`optional: false`); every rendered key is kept as is.
    assert [{k: v for k, v in volume.items() if k in rendered_volume}
            for volume, rendered_volume in zip(stored["configuration"]["volumes"],
                                               task.get("volumes", []), strict=True)
            ] == task.get("volumes", []), stored["configuration"]["volumes"]
    assert [v["path"] for v in task.get("volumes", [])] == [v["path"] for v in dstack_volumes]
    archives = sorted(a["path"] for a in stored["file_archives"])
    assert archives == sorted(f["path"] if isinstance(f, dict) else f.split(":")[-1]
                              for f in task["files"]), (archives, task["files"])
    # The value reaches the job through dstack (its env takes it from the submitting
    # shell); it is never in a file ft wrote or in what ft printed.
    written = "".join(p.read_text(errors="replace") for p in (work / ".ft").rglob("*")
                      if p.is_file() and p.suffix != ".whl")
    assert "hf_not-a-real-token" not in written + launched.stdout + launched.stderr
