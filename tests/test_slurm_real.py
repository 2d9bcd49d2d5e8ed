"""`ft launch` against a real Slurm (slurmctld + 3 slurmd from Debian's packages), two nodes a job.

The tiny CPU example is rendered with --nodes 2 and submitted with sbatch by `ft launch`;
srun starts `ft node` on n1 and n2, which resolves the master n1 to its NodeAddr and starts
torchrun, so the two nodes rendezvous over gloo and train one model together. Then
`ft status`, `ft logs`, `ft list` and `ft cancel` are checked against the same cluster.

Everything runs from a scratch working directory (its own copy of the example data, its own
tiny model, its own state file), so the checkout stays clean. `ft` on the job's PATH is a
shim for this checkout's code: sbatch exports the submitting environment to the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from orchestrator.backends.slurm.jobs import parse_scontrol_job
from tests.support.slurm_cluster import NODES, SlurmCluster, slurm_cluster  # noqa: F401
from tests.train_helpers import free_port

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny" / "tiny.yaml"
pytestmark = pytest.mark.slow
# tests/support/slow_steps.py, as a job imports it (copied beside nothing else).
SLOW_STEPS = "ft_test_slow_steps"


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]
    cluster: SlurmCluster

    def ft(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args],
                                  cwd=self.root, env=self.env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            squeue = self.cluster.run("squeue", "-h", "-t", "all", "-o", "%i %T %R").stdout
            raise AssertionError(f"`ft {' '.join(args)}` still running after {timeout}s\n"
                                 f"output: {exc.stdout}\nsqueue: {squeue}\n"
                                 f"{self.job_files()}") from None

    def job_files(self) -> str:
        """Every job output file, for failure messages."""
        return "\n".join(f"==> {p.name} <==\n{p.read_text()[-4000:]}"
                         for p in sorted(self.root.glob("tiny*.out")) +
                         sorted(self.root.glob("tiny*.err")))


@pytest.fixture(scope="module")
def workspace(slurm_cluster: SlurmCluster, tmp_path_factory) -> Workspace:  # noqa: F811
    root = tmp_path_factory.mktemp("ftjob")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ft"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m orchestrator.cli "$@"\n')
    shim.chmod(0o755)
    shutil.copytree(REPO / "examples" / "tiny" / "data", root / "examples" / "tiny" / "data")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env = {**inherited, **slurm_cluster.env,
           "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                    os.environ.get("PATH", "")]),
           "PYTHONPATH": str(REPO), "FT_STATE_DIR": str(root / "state"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    built = subprocess.run([sys.executable, "-m", "trainer.models.tiny",
                            str(root / "examples" / "tiny" / "model")],
                           cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return Workspace(root, env, slurm_cluster)


def write_spec(ws: Workspace, name: str, launch: dict | None = None, ship_ft: bool = False,
               **training: object) -> str:
    """The tiny example with a free rendezvous port, so a concurrent test run on this machine
    cannot collide; ft is already on the nodes (the checkout's shim) unless ship_ft."""
    spec = yaml.safe_load(TINY.read_text())
    spec.update(training)
    spec["launch"].update(launch or {})
    launch = spec["launch"]
    launch.update(name=name, master_port=free_port())
    if not ship_ft:
        launch["install"] = {"method": "image"}
    (ws.root / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return f"{name}.yaml"



def _submitted_ref(output: str) -> str:
    match = re.search(r"submitted (slurm:\d+)", output)
    assert match, output
    return match.group(1)


def _wait_for(ws: Workspace, ref: str, word: str, timeout_s: float = 180,
              poll_s: float = 1) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = ws.ft("status", ref).stdout
        if word in text:
            return text
        time.sleep(poll_s)
    raise AssertionError(f"{ref} never showed {word}; last status:\n{text}\n{ws.job_files()}")


def test_two_node_training_then_status_logs_list(workspace: Workspace) -> None:
    ws = workspace
    spec = write_spec(ws, "tiny")
    started = time.monotonic()
    launch = ws.ft("launch", spec, "--backend", "slurm", "--nodes", "2", "--watch",
                   timeout=480)
    took = time.monotonic() - started
    assert launch.returncode == 0, f"{launch.stdout}\n{launch.stderr}\n{ws.job_files()}"
    ref = _submitted_ref(launch.stdout)
    job_id = ref.split(":")[1]
    print(f"2-node Slurm training job {ref} took {took:.0f} s")  # shown with pytest -s / -rA

    # --watch followed the state and the loss lines, with the progress bar.
    assert re.search(rf"{ref} RUNNING", launch.stdout), launch.stdout
    assert re.search(r"\] ~?\d+/30  loss [\d.]+", launch.stdout), launch.stdout
    assert f"{ref} finished" in launch.stdout

    # Both nodes ran ft node, with the master resolved to n1's NodeAddr.
    err = (ws.root / f"tiny-{job_id}.err").read_text()
    assert "ft node: node 0 of 2, master 127.0.0.1:" in err, err
    assert "ft node: node 1 of 2, master 127.0.0.1:" in err, err
    # ...and trained one model together: world size 2, loss lines, an adapter saved.
    out = (ws.root / f"tiny-{job_id}.out").read_text()
    assert "{'loss'" in out, out
    summary = json.loads((ws.root / "outputs" / "tiny" / "ft-train-summary.json").read_text())
    assert summary["world_size"] == 2, summary
    assert (ws.root / "outputs" / "tiny" / "adapter_model.safetensors").is_file()

    status = ws.ft("status", ref)
    assert status.returncode == 0, status.stderr
    assert "SUCCEEDED (COMPLETED)" in status.stdout
    assert f"log: {ws.root}/tiny-{job_id}.out" in status.stdout
    assert "ExitCode: 0:0" in status.stdout

    logs = ws.ft("logs", "tiny")  # by name: the newest job called tiny
    assert logs.returncode == 0, logs.stderr
    assert "{'loss'" in logs.stdout and "ft node: node 1 of 2" in logs.stdout

    listed = ws.ft("list")
    assert re.search(rf"^{ref}\s+tiny\s+SUCCEEDED \(COMPLETED\)", listed.stdout, re.M), \
        listed.stdout


def test_ft_cancel_during_training_ends_the_job_cancelled_not_requeued(
        workspace: Workspace) -> None:
    """`ft cancel` (a plain scancel) while the nodes train: every rank saves and exits 75, as
    for a preemption, yet the job ends CANCELLED and is not requeued though restarts remain
    (on_preemption is on). ft 0b21ef0 requeued it: PD (BeginTime) a few seconds later."""
    ws = workspace
    name = "tiny-cancel"
    ref, job_id = _launch_endless_until_training(ws, name)

    cancel = ws.ft("cancel", ref)
    assert cancel.returncode == 0, cancel.stderr
    assert f"cancel requested for {ref} ({name})" in cancel.stdout
    final = _wait_for(ws, ref, "CANCELLED", timeout_s=60)
    assert "attempt 1: cancelled" in final, final
    time.sleep(8)  # where 0b21ef0's script had requeued it
    job = parse_scontrol_job(ws.cluster.run("scontrol", "-o", "show", "job", job_id).stdout)
    assert (job["JobState"], job["Restarts"]) == ("CANCELLED", "0"), job
    log = (ws.root / f"{name}-{job_id}.err").read_text()
    assert "ft: attempt 1: SIGTERM (cancelled): every node saves a checkpoint" in log, log
    assert log.count("saved a complete checkpoint and stopped: exit 75") == 2, log
    assert "ft: attempt 1 stopped: cancelled (exit 75); not requeueing" in log, log


def test_a_dead_node_ends_the_attempt_promptly_and_requeues_it_as_a_node_failure(
        workspace: Workspace) -> None:
    """Node n2 dies as a machine does: its slurmd, its slurmstepd and every process of the
    job on it SIGKILLed at once. The surviving node's `ft node` fails within seconds, but
    srun would wait for n2 until the controller declares it down (SlurmdTimeout, 300 s
    here; ft 0b21ef0's job stayed RUNNING that long): the batch script ends srun KillWait +
    30 s after the survivor's failure and requeues the job as a node failure."""
    ws = workspace
    name = "tiny-node-lost"
    ref, job_id = _launch_endless_until_training(ws, name)
    err = ws.root / f"{name}-{job_id}.err"

    killed_at = time.monotonic()
    _kill_node(ws, job_id, node_id=1, name="n2")
    try:
        while _squeue_state(ws, job_id) == "RUNNING":
            assert time.monotonic() - killed_at < NODE_LOSS_BOUND_S, \
                f"still RUNNING {NODE_LOSS_BOUND_S} s after n2 died\n{ws.job_files()}"
            time.sleep(1)
        print(f"n2 killed: the job left RUNNING after {time.monotonic() - killed_at:.0f} s")
        log = err.read_text()
        assert "ft: node(s) n2 never reported after another node failed" in log, log
        assert "ft: attempt 1 stopped: node failure (exit 137); requeueing (restart 1 of 3)" \
            in log, log
    finally:
        _restart_slurmd(ws, "n2")
    pending = _wait_for(ws, ref, "PENDING", timeout_s=120)
    assert "requeued 1 time (attempt 1: node failure)" in pending, pending
    # Not started again: Slurm may still deliver the old attempt's kill to the returning
    # node (seen: 30 s later), which would hit a new attempt there.
    ws.cluster.run("scancel", job_id)
    _wait_for(ws, ref, "CANCELLED", timeout_s=60)
    _wait_for_idle_nodes(ws)


# Measured on this 2-core machine under load: see docs/checkpoints-and-restarts.md ("A dead node").
NODE_LOSS_BOUND_S = 150


def _launch_endless_until_training(ws: Workspace, name: str,
                                   timeouts: dict | None = None) -> tuple[str, str]:
    """Launch a 2-node job that would train for ever; return (ref, job id) once it logged
    three losses."""
    spec = write_spec(ws, name, max_steps=100000, output_dir=f"./outputs/{name}",
                      launch={"env": {"OMP_NUM_THREADS": 1}, "timeouts": timeouts or {}})
    launch = ws.ft("launch", spec, "--backend", "slurm", "--nodes", "2")
    assert launch.returncode == 0, launch.stderr
    ref = _submitted_ref(launch.stdout)
    job_id = ref.split(":")[1]
    _wait_for_losses(ws, ws.root / f"{name}-{job_id}.out", 3)
    return ref, job_id


def _wait_for_losses(ws: Workspace, out: Path, count: int, after: str = "") -> None:
    deadline = time.monotonic() + 300
    while True:
        text = out.read_text() if out.exists() else ""
        attempt = text.split(after, 1)[1] if after and after in text else "" if after else text
        if attempt.count("{'loss'") >= count:
            return
        assert time.monotonic() < deadline, ws.job_files()
        time.sleep(0.5)


def _wait_for_idle_nodes(ws: Workspace, timeout_s: float = 120) -> None:
    """Every node back in service, for the tests that follow."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = ws.cluster.run("sinfo", "-h", "-N", "-p", "debug", "-o", "%N %t").stdout
        if sorted(states.split()) == sorted(["idle"] * len(NODES) + list(NODES)):
            return
        assert time.monotonic() < deadline, f"nodes not idle: {states}"
        time.sleep(1)


def _squeue_state(ws: Workspace, job_id: str) -> str:
    return ws.cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()


def _kill_node(ws: Workspace, job_id: str, node_id: int, name: str) -> None:
    """SIGKILL node `name` as a power loss would: its slurmd, the slurmstepd of the job's
    step on it and every process of the job that runs there (found by their environment)."""
    ours = [pid for pid, env in _job_processes(job_id)
            if env.get("SLURM_NODEID") == str(node_id) and env.get("SLURM_STEP_ID") == "0"]
    assert ours, "no process of the job's step on " + name
    parents = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
               for pid in ours}
    stepds = [pid for pid in parents if "slurmstepd" in _cmdline(pid)]
    assert stepds, f"no slurmstepd above {ours}"
    slurmd = int((ws.cluster.root / f"slurmd-{name}.pid").read_text().split()[0])
    for pid in [slurmd, *stepds, *ours]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # The ranks and torchrun under them, which ft node would have taken down with it.
    for pid, env in _job_processes(job_id):
        if env.get("SLURM_NODEID") == str(node_id) and env.get("SLURM_STEP_ID") == "0":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _job_processes(job_id: str) -> list[tuple[int, dict[str, str]]]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            raw = (proc / "environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0")
                   if "=" in item)
        if env.get("SLURM_JOB_ID") == job_id:
            found.append((int(proc.name), env))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _restart_slurmd(ws: Workspace, name: str) -> None:
    started = ws.cluster.run(shutil.which("slurmd") or "/usr/sbin/slurmd",
                             "-f", str(ws.cluster.conf), "-N", name)
    assert started.returncode == 0, started.stderr


def test_status_of_unknown_job_is_a_clean_error(workspace: Workspace) -> None:
    result = workspace.ft("status", "slurm:999999")
    assert result.returncode == 2
    assert "no job 'slurm:999999'" in result.stderr and "Traceback" not in result.stderr


FAKE_NODE = """#!/bin/bash
# Stands in for `ft node` (no training): runs until SIGTERM, then "saves" and exits 75 as
# ft node does; the fourth attempt finishes at once.
echo "fake ft $1 $SLURM_NODEID: attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 ))" >&2
if [ "${SLURM_RESTART_COUNT:-0}" -ge 3 ]; then exit 0; fi
stop() {
  trap '' TERM  # a repeated signal (Slurm's and the trap's) stops it once
  echo "fake ft node $SLURM_NODEID: SIGTERM, saved: exit 75" >&2
  # The preempted attempt saves for a while, as a big model does (KillWait is 20 s).
  if [ "${SLURM_RESTART_COUNT:-0}" -eq 2 ]; then sleep 3.5; fi
  exit 75
}
trap stop TERM
# Short sleeps: Slurm signals them too, and one killed must not end the node.
while :; do sleep 1 & wait $!; done
"""


def test_batch_signal_admin_requeue_and_preemption_restart_the_job(
        workspace: Workspace) -> None:
    """The rendered script's own logic, quickly (a stand-in `ft node`, no training): a
    SIGTERM to the batch shell alone (`scancel --batch`, what the time-limit warning does)
    reaches every node through the trap, the nodes exit 75 and the script requeues; an
    admin's `scontrol requeue` restarts it again; then a job of the higher-priority
    partition preempts it (PreemptMode=REQUEUE): Slurm requeues it, and `ft status` shows
    it preempted while it stops, pending again after; the fourth attempt ends."""
    ws = workspace
    fake_bin = ws.root / "fake-node-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "ft").write_text(FAKE_NODE)
    (fake_bin / "ft").chmod(0o755)
    name = "tiny-requeue"
    spec = write_spec(ws, name, launch={"env": {"PATH": f"{fake_bin}:/usr/bin:/bin"}})
    launched = ws.ft("launch", spec, "--backend", "slurm", "--nodes", "2")
    assert launched.returncode == 0, launched.stderr
    ref = _submitted_ref(launched.stdout)
    job_id = ref.split(":")[1]
    err = ws.root / f"{name}-{job_id}.err"

    def restart(count: int, cause: str, how: tuple[str, ...]) -> str:
        """Stop the running attempt `how`; wait until it is requeued and says why."""
        _wait_for_log(ws, err, f"fake ft node 1: attempt {count}")
        assert ws.cluster.run(*how).returncode == 0
        stopping = _wait_for(ws, ref, f"requeued {count} time", timeout_s=60, poll_s=0.2)
        pending = _wait_for(ws, ref, "PENDING", timeout_s=60)
        assert f"attempt {count}: {cause})" in pending, pending
        ws.cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        return stopping

    restart(1, "stop signal", ("scancel", "--batch", "--signal=TERM", job_id))
    restart(2, "scontrol requeue", ("scontrol", "requeue", job_id))
    # Every node's CPUs, in the partition that preempts: this job must make room.
    stopping = restart(3, "preempted", ("sbatch", "--partition=urgent",
                                        f"--nodes={len(NODES)}",
                                        "--cpus-per-task=2", "--mem=1G", "--output=/dev/null",
                                        "--wrap=sleep 1"))
    # Seen while its nodes save: Slurm has counted the restart and says when it preempted.
    assert "RUNNING (COMPLETING)" in stopping, stopping
    assert re.search(r"detail: requeued 3 times \(attempt 1: stop signal, attempt 2: scontrol "
                     r"requeue.*\); preempted at \S+", stopping), stopping
    final = _wait_for(ws, ref, "SUCCEEDED", timeout_s=60)
    assert "requeued 3 times" in final, final

    log = err.read_text()
    first, second, third, fourth = re.split(r"==== ft: job \d+ attempt \d ====\n", log)[1:]
    assert "ft: attempt 1: SIGTERM (stop signal): every node saves a checkpoint" in first, log
    assert first.count("SIGTERM, saved: exit 75") == 2, log
    assert "ft: attempt 1 stopped: stop signal (exit 75); requeueing (restart 1 of 3)" \
        in first, log
    # Slurm requeues the job itself, and its SIGTERM reached every node too.
    assert "DUE TO JOB REQUEUE" in second and second.count("SIGTERM, saved: exit 75") == 2, log
    assert "DUE TO PREEMPTION" in third and third.count("SIGTERM, saved: exit 75") == 2, log
    assert "fake ft node 0: attempt 4" in fourth and "fake ft node 1: attempt 4" in fourth, log


def _wait_for_log(ws: Workspace, path: Path, text: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"no {text!r} in {path.name}\n{ws.job_files()}"
        time.sleep(0.3)


def _loss_lines(path: Path) -> int:
    return path.read_text().count("{'loss'") if path.exists() else 0


def test_a_time_limit_saves_requeues_the_job_and_it_resumes_the_same_curve(
        workspace: Workspace) -> None:
    """The job reaches a real time limit: Slurm's own `--signal=B:USR1@<stop_grace + 60 s>`
    warning (rendered by ft) goes to the batch shell, whose trap signals every process of
    the job's steps (`scancel --signal=TERM`, also what a drain or an admin's signal does):
    every node saves, `ft node` exits 75 through srun, the batch script requeues the job,
    the next attempt resumes from the checkpoint, and its losses equal an uninterrupted
    run's.

    Slurm counts limits in minutes and checks them every 30 s, so once training runs the
    job's limit is cut to 61-120 s from now, inside the 120 s warning window: the warning
    comes on the controller's next check. The first attempt's steps are slowed (a test-only
    trainer hook) so that training surely outlasts that check on any machine.

    This job also gets ft the way a fresh cluster does: no ft on the nodes' PATH, the
    checkout off PYTHONPATH and no package index reachable; each node installs the wheel
    `ft launch` shipped into the job's directory, and the requeued attempt reuses it."""
    ws = workspace
    steady = {"lr_scheduler": "constant", "save_steps": 100000, "eval_steps": 100000,
              "max_steps": 60, "logging_steps": 1}
    name = "tiny-timelimit"
    hooks = ws.root / "hooks"  # the slow-steps hook alone, not the checkout
    hooks.mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "support" / "slow_steps.py", hooks / f"{SLOW_STEPS}.py")
    offline = {"PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
               "PYTHONPATH": str(hooks), "PIP_NO_INDEX": "1",
               "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens there
               "FT_NODE_CACHE": str(ws.root / "node-cache"), "OMP_NUM_THREADS": 1,
               "FT_TRAINER_HOOKS": f"{SLOW_STEPS}:install", "FT_TEST_STEP_DELAY_S": 2}
    spec = write_spec(ws, name, launch={"stop_grace": "60s", "env": offline}, ship_ft=True,
                      output_dir=f"./outputs/{name}", **steady)
    launched = ws.ft("launch", spec, "--backend", "slurm", "--nodes", "2")
    assert launched.returncode == 0, launched.stderr
    # Read from the cluster at submit time (the test cluster sets KillWait=20).
    assert "warning: launch.stop_grace is 60 s but this cluster's KillWait is 20 s" \
        in launched.stderr, launched.stderr
    script = (ws.root / ".ft" / "rendered" / name / f"{name}.sbatch").read_text()
    assert "#SBATCH --signal=B:USR1@120\n" in script and "#SBATCH --time=" in script
    ref = _submitted_ref(launched.stdout)
    job_id = ref.split(":")[1]
    out, err = ws.root / f"{name}-{job_id}.out", ws.root / f"{name}-{job_id}.err"
    deadline = time.monotonic() + 240
    while _loss_lines(out) < 3:
        assert time.monotonic() < deadline, ws.job_files()
        time.sleep(0.5)
    # Trained meanwhile: the job's slowed steps and Slurm's 30 s checks leave the CPUs idle.
    reference = _Reference(ws, steady)
    try:
        limit = ws.cluster.run("scontrol", "update", f"JobId={job_id}",
                               f"TimeLimit={_run_seconds(ws, job_id) // 60 + 2}")
        assert limit.returncode == 0, limit.stderr
        _wait_for(ws, ref, "requeued 1 time", timeout_s=180)
        # after COMPLETING: held until BeginTime
        pending = _wait_for(ws, ref, "PENDING", timeout_s=60)
        assert "requeued 1 time (attempt 1: time limit)" in pending, pending
        # Slurm holds a requeued job for 120 s (BeginTime); let the clock of this test
        # cluster move on instead of waiting: what ft does does not depend on that wait.
        # The second attempt gets its time back, as a resubmitted job would.
        ws.cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now",
                       "TimeLimit=30")
        final = _wait_for(ws, ref, "SUCCEEDED", timeout_s=300)
        assert "requeued 1 time" in final, final
        expected = reference.losses()
    finally:
        reference.proc.kill()

    log = err.read_text()
    assert "==== ft: job " + job_id + " attempt 1 ====" in log, log
    assert "==== ft: job " + job_id + " attempt 2 ====" in log, log  # appended, not truncated
    assert "all 1 rank(s) saved a complete checkpoint and stopped: exit 75" in log, log
    assert "ft: attempt 1 stopped: time limit (exit 75); requeueing (restart 1 of 3)" in log, log
    resumed = re.search(r"resuming from \S*checkpoint-(\d+)", out.read_text() + log)
    assert resumed, ws.job_files()
    saved_at = int(resumed.group(1))

    assert "ft: attempt 1: SIGUSR1 (time limit): every node saves a checkpoint" in log, log
    _assert_installed_once_from_the_shipped_wheel(log, ws.root / ".ft" / name / "wheels")
    losses = _summary_losses(ws.root / "outputs" / name)
    after = {step: loss for step, loss in losses.items() if step > saved_at}
    assert sorted(after) == list(range(saved_at + 1, 61)), after
    for step, loss in after.items():
        assert abs(loss - expected[step]) < 1e-4, (step, loss, expected[step])


def _run_seconds(ws: Workspace, job_id: str) -> int:
    """How long the job has run (scontrol's RunTime, [D-]HH:MM:SS)."""
    job = parse_scontrol_job(ws.cluster.run("scontrol", "-o", "show", "job", job_id).stdout)
    days, _, clock = job["RunTime"].rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def _assert_installed_once_from_the_shipped_wheel(log: str, wheels: Path) -> None:
    """Both nodes of this cluster share one machine's cache dir (/tmp on a real node is
    its own): the first installs, the other waits on the lock and reuses it; after the
    requeue both reuse it. Nothing was fetched: pip had no index."""
    (wheel,) = wheels.glob("*.whl")
    attempts = re.split(r"==== ft: job \d+ attempt \d+ ====", log)[1:]
    assert len(attempts) == 2, log
    installed = re.compile(rf"ft install on \S+: installed {re.escape(wheel.name)} ")
    reused = re.compile(rf"ft install on \S+: {re.escape(wheel.name)} .* reusing it")
    first, second = attempts
    assert len(installed.findall(first)) == 1 and len(reused.findall(first)) == 1, first
    assert not installed.findall(second) and len(reused.findall(second)) == 2, second
    assert "fetching them from the package index" not in log, log


class _Reference:
    """The same job never stopped: two emulated Slurm nodes here, same world and data,
    started now and read by `losses`."""

    def __init__(self, ws: Workspace, training: dict):
        self.output = ws.root / "outputs" / "tiny-reference"
        spec = write_spec(ws, "tiny-reference", output_dir=str(self.output), **training)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "launch", spec, "--backend", "local",
             "--nodes", "2", "--emulate", "slurm"], cwd=ws.root, env=ws.env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def losses(self) -> dict[int, float]:
        stdout, _ = self.proc.communicate(timeout=300)
        errors = [line for line in stdout.splitlines() if "Error" in line]
        assert self.proc.returncode == 0, "\n".join(errors) + stdout[-2000:]
        return _summary_losses(self.output)


def _summary_losses(output_dir: Path) -> dict[int, float]:
    summary = json.loads((output_dir / "ft-train-summary.json").read_text())
    return {e["step"]: e["loss"] for e in summary["log_history"] if "loss" in e}
