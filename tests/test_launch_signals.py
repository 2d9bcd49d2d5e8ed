"""`ft launch --backend local` and its signals, as a person meets them: a stop at any moment
of start-up ends resumable (75) with no traceback on any node, a SIGKILLed node gives 137
and is named, and `--dry-run` starts nothing.

The start-up stages are hit every time by test-only pause points (tests/support/
stop_stages.py): the job waits at the stage until the test has sent its SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.backends.local.isolation import unavailable_reason
from orchestrator.process import _parent_pid, descendants
from tests.cli_runner import REPO, run_ft
from tests.support import stop_stages
from tests.train_helpers import free_port, shared_volumes, write_tiny_spec
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE

pytestmark = pytest.mark.slow
LAUNCH = {"nodes": 2, "env": {"OMP_NUM_THREADS": "1"}, "stop_grace": "60s"}
LONG = {"max_steps": 100000, "save_steps": 100000, "eval_steps": 100000}


def _spec(directory: Path, tiny_model_dir: Path, nodes: int = 2) -> Path:
    # Output, cache and the pause points' directory on storage every node shares.
    return write_tiny_spec(directory, tiny_model_dir, **LONG, launch={
        **LAUNCH, "nodes": nodes, "volumes": shared_volumes(directory)})


def _restore_sigint() -> None:
    """preexec: SIGINT as a terminal's foreground job has it (a test run in the background
    would otherwise hand it down ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch(spec: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`ft launch` in a process group of its own, as a terminal runs a foreground job."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--master-port", str(free_port())],
                            cwd=spec.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, process_group=0,
                            preexec_fn=_restore_sigint)


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the launch ended ({proc.returncode}) before {what}:\n"
                        f"{proc.stdout.read()[-4000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


# (stage, nodes, which ranks pause there, the signal, what the output says). Two nodes where
# they matter: a node's torchrun meeting another that never starts one, rank 0 preparing the
# data while rank 1 waits for it in a collective (only rank 0 pauses), both nodes saving step
# 1; one node elsewhere (the ranks' own start-up, quicker). The last case is Ctrl-C: SIGINT
# to the launch's whole process group, as a terminal sends it.
STAGES = [
    ("torchrun", 2, None, signal.SIGTERM,
     "stopped before training started: nothing to save yet"),
    ("imports", 1, None, signal.SIGTERM, "came while this rank was starting"),
    ("data", 2, "0", signal.SIGTERM, "before the model was loaded: nothing to save yet"),
    ("model", 1, None, signal.SIGTERM, "after the model was loaded: nothing to save yet"),
    ("step", 2, None, signal.SIGTERM, "saved a complete checkpoint and stopped"),
    ("step", 1, None, signal.SIGINT,
     "SIGINT received: saving a checkpoint at the end of this step"),
]


@pytest.mark.parametrize("stage, nodes, ranks, signum, said", STAGES,
                         ids=[f"{s[0]}-{s[3].name}" for s in STAGES])
def test_a_stop_at_any_start_up_stage_ends_resumable_without_a_traceback(
        stage, nodes, ranks, signum, said, tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, tiny_model_dir, nodes)
    gates = tmp_path / "gates"
    gates.mkdir()
    proc = _launch(spec, stop_stages.env(stage, gates, ranks))
    _wait_for(lambda: any(p.name.startswith(stage) for p in gates.iterdir()), proc,
              f"the job reached the {stage} stage")
    # What a time limit, a preemption or a person (Ctrl-C: to the process group) sends.
    os.killpg(proc.pid, signum)
    (gates / stop_stages.SIGNALLED).touch()
    started = time.monotonic()
    log = proc.communicate(timeout=180)[0]
    assert proc.returncode == RESUMABLE_EXIT_CODE, log[-4000:]
    assert time.monotonic() - started < 90, "the ranks were not stopped promptly"
    assert "Traceback" not in log and "ChildFailedError" not in log, log[-4000:]
    assert said in log, log[-4000:]
    for node in range(nodes):
        assert f"[node{node}] ft node: {signum.name} received" in log, log[-4000:]
        assert f"[node{node}] ft node: " in log and "exit 75 (resumable)" in log
    assert "did not stop within the grace" not in log
    if signum == signal.SIGINT:
        assert "SIGTERM" not in log, "a Ctrl-C logged as another signal"
    checkpoints = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    if stage == "step":  # a stop during step 1 saves step 1
        assert checkpoints == ["checkpoint-1"]
        assert (tmp_path / "out" / "checkpoint-1" / "ft-complete.json").is_file()
    else:
        assert checkpoints == []


def _node_process(launcher: int, node: int) -> int:
    """The process `ft launch` started for emulated node `node` (it sets SLURM_NODEID)."""
    for pid in descendants(launcher):
        if _parent_pid(pid) != launcher:
            continue
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"SLURM_NODEID={node}".encode() in environ:
            return pid
    raise AssertionError(f"no process of node {node} under {launcher}")


def test_a_sigkilled_node_ends_the_job_137_and_is_named(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, tiny_model_dir)
    proc = _launch(spec)
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if sum("'loss'" in x for x in lines) >= 2:
            break
    os.kill(_node_process(proc.pid, 1), signal.SIGKILL)
    log = "".join(lines) + proc.communicate(timeout=180)[0]
    assert proc.returncode == 137, log[-4000:]  # 128 + SIGKILL, never 247 (the raw -9)
    named = "node 1 (host node1)" if unavailable_reason() is None else "node 1"
    assert f"ft launch: {named} was killed by SIGKILL (exit 137)" in log, log[-4000:]
    assert f"ft launch: exit 137: {named} failed first" in log, log[-4000:]


def test_dry_run_on_local_starts_nothing_and_writes_nothing(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch=LAUNCH)
    before = sorted(tmp_path.rglob("*"))
    started = time.monotonic()
    result = run_ft("launch", str(spec), "--backend", "local", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 30
    assert sorted(tmp_path.rglob("*")) == before, "a dry run wrote files"
    out = result.stdout
    assert "# 2 emulated slurm node(s)" in out
    for node in (0, 1):
        assert f"# ---- node {node} ----" in out and f"SLURM_NODEID={node}" in out
    assert out.count(" -m orchestrator.cli node ") == 2
    assert "ft node:" not in result.stdout + result.stderr  # no node started


def test_a_full_disk_under_launch_is_exit_2_with_one_message_and_no_traceback(
        tmp_path, tiny_model_dir):
    """output_dir on a 200 KiB tmpfs (a private mount namespace) under a 1-node launch: the
    rank says the disk is full, `ft node` and `ft launch` end with its code, 2; torchrun
    (which turns a rank's exit 2 into a ChildFailedError traceback) has nothing to report."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=4, save_steps=2, eval_steps=2,
                           launch={"nodes": 1, "env": {"OMP_NUM_THREADS": "1"}})
    out = tmp_path / "out"
    out.mkdir()
    script = 'mount -t tmpfs -o size=200k tmpfs "$1" && shift && exec "$@"'
    argv = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
            str(out), sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
            "--backend", "local", "--no-isolate", "--master-port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-4000:]
    assert log.count(f"error: disk full while writing to {out}") == 1, log[-4000:]
    assert "Traceback" not in log and "ChildFailedError" not in log, log[-4000:]
    assert "[node0] ft node: rank 0 stopped on the error it printed above: exit 2" in log
