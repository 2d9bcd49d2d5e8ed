"""The Slurm adapter against Slurm 22.05.8's captured outputs (tests/fixtures/tool_outputs)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from orchestrator.backends import base
from orchestrator.backends.job_model import JobRecord, JobState
from orchestrator.backends.slurm import BACKEND as SLURM
from orchestrator.backends.slurm.jobs import (
    output_files,
    parse_scontrol_job,
    parse_squeue,
)
from orchestrator.backends.slurm.stop_causes import attempt_causes
from orchestrator.jobs import store
from orchestrator.jobs.submit import submit
from orchestrator.spec.load import load_spec
from tests.fixtures.tool_outputs.replay import captured
from trainer.torch_free.errors import UserError

REPO = Path(__file__).resolve().parent.parent
V = "slurm-22.05.8"


def rec(job_id: str = "1", workdir: str = "/w") -> JobRecord:
    return JobRecord("slurm", job_id, "tiny", "/w/tiny.yaml", "ab" * 32, "/w/.ft/rendered/tiny",
                     "2026-11-23T11:00:00+00:00", workdir, [f"{workdir}/tiny-{job_id}.out",
                                                            f"{workdir}/tiny-{job_id}.err"])


@pytest.mark.parametrize("capture, state, label, nodes, detail", [
    ("squeue-pending", JobState.PENDING, "PENDING", "2", "Resources"),
    ("squeue-completed", JobState.SUCCEEDED, "SUCCEEDED (COMPLETED)", "n[1-2]", ""),
    ("squeue-failed", JobState.FAILED, "FAILED", "1", "NonZeroExitCode"),
    ("squeue-cancelled-while-pending", JobState.CANCELLED, "CANCELLED", "2", ""),
    ("squeue-cancelled-while-running", JobState.RUNNING, "RUNNING (COMPLETING)", "n[1-2]", ""),
    ("squeue-cancelled-after-killwait", JobState.CANCELLED, "CANCELLED", "n[1-2]", ""),
    # Preempted by a job of a higher partition (PreemptMode=REQUEUE): while its steps save,
    # then pending again; a --no-requeue job's PREEMPTED is its end.
    ("squeue-preempted-saving", JobState.RUNNING, "RUNNING (COMPLETING)", "n[1-2]",
     "requeued 1 time; preempted at 2026-11-26T15:59:59"),
    ("squeue-preempted-requeued", JobState.PENDING, "PENDING", "2",
     "requeued 1 time; BeginTime"),
    ("squeue-preempted-not-requeued", JobState.FAILED, "FAILED (PREEMPTED)", "n[1-2]",
     "preempted and not requeued (PreemptMode=CANCEL, or the job was --no-requeue)"),
])
def test_squeue_states(capture, state, label, nodes, detail) -> None:
    [(job_id, status)] = parse_squeue(captured(f"{V}-{capture}").stdout).items()
    assert (status.state, status.label, status.nodes, status.detail) == (state, label, nodes,
                                                                         detail)


def test_one_squeue_call_for_several_jobs(fake) -> None:
    runner = fake({("squeue",): captured(f"{V}-squeue-running")})
    statuses = SLURM.statuses([rec("1"), rec("2")])
    assert runner.calls == [("squeue", "-h", "-t", "all", "-j", "1,2", "-O",
                             "JobID:|,State:|,TimeUsed:|,NumNodes:|,ReasonList:|,RestartCnt:|,"
                             "PreemptTime:")]
    assert statuses["slurm:1"].label == "RUNNING" and statuses["slurm:1"].nodes == "n[1-2]"
    assert statuses["slurm:2"].label == "PENDING" and statuses["slurm:2"].detail == "Resources"


def test_a_requeued_job_says_so_and_how_often(fake) -> None:
    """After `scontrol requeue` Slurm shows the job as PENDING (BeginTime): ft adds why."""
    fake({("squeue",): captured(f"{V}-squeue-requeued"),
          ("scontrol",): captured(f"{V}-scontrol-show-job-requeued")})
    status = SLURM.statuses([rec("5")])["slurm:5"]
    assert status.label == "PENDING" and status.detail == "requeued 1 time; BeginTime"
    assert "Restarts: 1" in SLURM.details(rec("5"))


# The .err of a job preempted on its third attempt, as the 2-node test cluster wrote it
# (test_slurm_real.py::test_batch_signal_admin_requeue_and_preemption_restart_the_job).
PREEMPTED_LOG = """\
==== ft: job 1 attempt 2 ====
slurmstepd-n1: error: *** JOB 1 ON n1 CANCELLED AT 2026-11-26T16:06:11 DUE TO JOB REQUEUE ***
==== ft: job 1 attempt 3 ====
srun: Job step aborted: Waiting up to 7 seconds for job step to finish.
slurmstepd-n1: error: *** STEP 1.0 ON n1 CANCELLED AT 2026-11-26T16:06:15 DUE TO PREEMPTION ***
slurmstepd-n1: error: *** JOB 1 ON n1 CANCELLED AT 2026-11-26T16:06:15 DUE TO PREEMPTION ***
srun: got SIGCONT
srun: forcing job termination
ft: stop signal: every node saves a checkpoint, then stops
srun: error: n2: task 1: Exited with exit code 75
"""


def test_a_requeued_job_says_why_its_last_attempt_stopped(fake, tmp_path: Path) -> None:
    """squeue shows a preempted-and-requeued job as plain PENDING (BeginTime); the job's own
    log says what stopped its newest attempt."""
    fake({("squeue",): captured(f"{V}-squeue-preempted-requeued")})
    record = rec("6", str(tmp_path))
    (tmp_path / "tiny-6.err").write_text(PREEMPTED_LOG)
    status = SLURM.statuses([record])["slurm:6"]
    assert status.label == "PENDING"
    assert status.detail == ("requeued 1 time (attempt 2: scontrol requeue, attempt 3: "
                             "preempted); BeginTime")
    (tmp_path / "tiny-6.err").write_text(PREEMPTED_LOG.split("==== ft: job 1 attempt 3")[0])
    assert SLURM.statuses([record])["slurm:6"].detail == (
        "requeued 1 time (attempt 2: scontrol requeue); BeginTime")


# What the batch script writes per attempt (templates/slurm.sbatch.j2), with slurmstepd's
# lines, as the 2-node test cluster wrote them (test_slurm_real.py).
CAUSES_LOG = """\
==== ft: job 9 attempt 1 ====
ft: attempt 1: SIGUSR1 (time limit): every node saves a checkpoint, then stops
slurmstepd-n1: error: *** STEP 9.0 ON n1 CANCELLED AT 2026-12-06T22:38:51 ***
ft: attempt 1 stopped: time limit (exit 75); requeueing (restart 1 of 3); the next ...
slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-12-06T22:38:53 DUE TO JOB REQUEUE ***
==== ft: job 9 attempt 2 ====
ft: node(s) n2 never reported after another node failed: lost (node failure); ending the step
ft: attempt 2 stopped: node failure (exit 137); requeueing (restart 2 of 3); the next ...
==== ft: job 9 attempt 3 ====
slurmstepd-n1: error: *** STEP 9.0 ON n1 CANCELLED AT 2026-12-06T22:39:33 DUE TO PREEMPTION ***
ft: attempt 3: SIGTERM (requeued by Slurm): every node saves a checkpoint, then stops
==== ft: job 9 attempt 4 ====
ft: attempt 4: SIGTERM (stop signal): every node saves a checkpoint, then stops
ft: attempt 4 stopped: stop signal (exit 75); requeueing (restart 4 of 5); the next ...
==== ft: job 9 attempt 5 ====
slurmstepd-n1: error: *** JOB 9 ON n1 CANCELLED AT 2026-12-06T22:33:28 ***
ft: attempt 5: SIGTERM (cancelled): every node saves a checkpoint, then stops
ft: attempt 5 stopped: cancelled (exit 75); not requeueing
"""


def test_each_attempt_says_why_it_stopped() -> None:
    """The script's verdict wins over slurmstepd's "DUE TO JOB REQUEUE" that its own
    `scontrol requeue` causes; slurmstepd's "DUE TO PREEMPTION" wins over the script's
    "requeued by Slurm", which cannot tell a preemption from an admin's requeue."""
    assert attempt_causes(CAUSES_LOG) == {1: "time limit", 2: "node failure", 3: "preempted",
                                          4: "stop signal", 5: "cancelled"}
    assert attempt_causes("==== ft: job 1 attempt 1 ====\nloss 2.0\n") == {}
    # A script rendered by an older ft: its trap's line only.
    assert attempt_causes("==== ft: job 1 attempt 1 ====\nft: stop signal: every node "
                          "saves a checkpoint, then stops\n") == {1: "stop signal"}


def test_a_cancelled_job_says_so_and_why_earlier_attempts_stopped(fake, tmp_path) -> None:
    fake({("squeue",): captured(f"{V}-squeue-cancelled-after-killwait")})
    record = rec("4", str(tmp_path))
    (tmp_path / "tiny-4.err").write_text(CAUSES_LOG.split("==== ft: job 9 attempt 2")[0] +
                                         "==== ft: job 9 attempt 2 ====\n" +
                                         CAUSES_LOG.split("attempt 5 ====\n")[1])
    status = SLURM.statuses([record])["slurm:4"]
    assert status.label == "CANCELLED" and status.detail == "attempt 2: cancelled"


def _stop_cause_function() -> str:
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", {"nodes": 2}, for_launch=True)
    script = SLURM.render(spec).files["tiny.sbatch"]
    return re.search(r"^stop_cause\(\) \{\n.*?^\}\n", script, re.M | re.S).group(0)


# Seen from inside the batch script on the test cluster when the time limit itself is hit
# (the line is abridged: the fields stop_cause reads, in scontrol's order).
TIMEOUT_LINE = ("JobId=5 JobName=probe JobState=COMPLETING Reason=TimeLimit Dependency=(null) "
                "Requeue=1 Restarts=0 BatchFlag=1 ExitCode=0:0 RunTime=00:01:29 "
                "TimeLimit=00:01:00 EndTime=2026-12-06T22:35:51 PreemptTime=None\n")


@pytest.mark.parametrize("scontrol_says, restart_count, cause", [
    (f"{V}-scontrol-show-job-running", "", "running"),
    # scancel while running (what `ft cancel` runs), and after KillWait
    (f"{V}-scontrol-show-job-cancelled-while-running", "", "cancelled"),
    (f"{V}-scontrol-show-job-cancelled-after-killwait", "", "cancelled"),
    # preempted (PreemptMode=REQUEUE): Slurm has counted the restart already
    (f"{V}-scontrol-show-job-preempted-saving", "", "requeued by Slurm"),
    (f"{V}-scontrol-show-job-preempted-saving", "1", "cancelled"),
    (TIMEOUT_LINE, "", "time limit"),
    ("", "", "unknown"),  # the controller does not answer
])
def test_the_batch_script_reads_the_stop_cause_from_slurms_job_record(
        tmp_path, scontrol_says, restart_count, cause) -> None:
    """The script's own stop_cause, run by bash against what scontrol printed (captured
    from Slurm 22.05.8), with a stand-in scontrol on PATH."""
    text = scontrol_says if " " in scontrol_says or not scontrol_says else captured(
        scontrol_says).stdout
    (tmp_path / "said").write_text(text)
    fake_scontrol = tmp_path / "scontrol"
    fake_scontrol.write_text(f"#!/bin/sh\n[ -s {tmp_path}/said ] || exit 1\n"
                             f"cat {tmp_path}/said\n")
    fake_scontrol.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SLURM_JOB_ID": "1"}
    if restart_count:
        env["SLURM_RESTART_COUNT"] = restart_count
    result = subprocess.run(["bash", "-c", f"set -euo pipefail\n{_stop_cause_function()}"
                             "stop_cause"], env=env, capture_output=True, text=True)
    assert (result.returncode, result.stdout.strip()) == (0, cause), result.stderr


def test_a_job_gone_from_squeue_without_accounting_is_unknown_not_guessed(fake) -> None:
    fake({("squeue",): captured(f"{V}-squeue-unknown"),
          ("sacct",): captured(f"{V}-sacct-accounting-off")})
    status = SLURM.statuses([rec("5")])["slurm:5"]
    assert status.state == JobState.UNKNOWN and status.raw == "gone"
    assert "Slurm accounting storage is disabled" in status.detail
    assert "its log shows how it ended" in status.detail


def test_controller_down_is_a_user_error_with_the_fix(fake) -> None:
    fake({("squeue",): captured(f"{V}-squeue-controller-down")})
    with pytest.raises(UserError, match="Unable to contact slurm controller") as err:
        SLURM.statuses([rec()])
    assert "SLURM_CONF" in str(err.value)


def test_scontrol_one_line_parsing_and_details(fake) -> None:
    job = parse_scontrol_job(captured(f"{V}-scontrol-show-job-failed").stdout)
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "3:0"
    assert job["Reason"] == "NonZeroExitCode" and job["StdOut"].endswith("/fails-3.out")
    assert job["TRES"] == "cpu=2,node=1,billing=2"  # values with "=" inside stay whole
    completed = captured(f"{V}-scontrol-show-job-completed")
    workdir = parse_scontrol_job(completed.stdout)["WorkDir"]
    fake({("scontrol",): completed})
    lines = SLURM.details(rec("1"))
    assert "ExitCode: 0:0" in lines and "NodeList: n[1-2]" in lines
    assert [line for line in lines if line.startswith("log: ")] == [
        f"log: {workdir}/tiny-1.out", f"log: {workdir}/tiny-1.err"]


def test_log_paths_fall_back_to_the_recorded_ones(fake, tmp_path: Path) -> None:
    fake({("scontrol",): captured(f"{V}-scontrol-show-job-unknown")})
    (tmp_path / "tiny-8.out").write_text("line 1\nline 2\n")
    lines = list(SLURM.log_lines(rec("8", str(tmp_path)), follow=False))
    assert lines[:3] == [f"==> {tmp_path}/tiny-8.out <==", "line 1", "line 2"]
    assert "does not exist" in lines[-1]


def test_output_files_from_the_rendered_script() -> None:
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", {"nodes": 2}, for_launch=True)
    script = SLURM.render(spec).files["tiny.sbatch"]
    assert output_files(script, "42", "tiny", Path("/w")) == ["/w/tiny-42.out",
                                                             "/w/tiny-42.err"]
    assert output_files("#SBATCH --output=/abs/%x_%j_100%%.log\n", "7", "run", Path("/w")) == [
        "/abs/run_7_100%.log"]


def test_submit_adds_parsable_and_records_the_job(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    runner = fake({("scontrol", "ping"): captured(f"{V}-scontrol-ping-up"),
                   ("scontrol", "show", "config"): captured(f"{V}-scontrol-show-config"),
                   ("sbatch",): captured(f"{V}-sbatch-parsable")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", {"nodes": 2}, for_launch=True)
    record = submit(SLURM, SLURM.render(spec), Path(".ft/rendered/tiny"), spec)
    assert runner.calls[-1] == ("sbatch", "--parsable", ".ft/rendered/tiny/tiny.sbatch")
    assert (record.ref, record.name, record.spec_sha256) == ("slurm:1", "tiny", spec.sha256)
    assert record.log_files == [f"{tmp_path}/tiny-1.out", f"{tmp_path}/tiny-1.err"]
    assert store.find_record("tiny") == record
    assert (tmp_path / ".ft/rendered/tiny/tiny.sbatch").is_file()


@pytest.mark.parametrize("capture, hint", [
    ("sbatch-parsable-unsatisfiable", "compare launch.cpus_per_node"),
    ("sbatch-controller-down", "point SLURM_CONF"),
    ("sbatch-no-config", "point SLURM_CONF"),
])
def test_submit_failures_explain_the_fix(fake, tmp_path, monkeypatch, capture, hint) -> None:
    monkeypatch.setenv("FT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    fake({("scontrol", "ping"): captured(f"{V}-scontrol-ping-up"),
          ("scontrol", "show", "config"): captured(f"{V}-scontrol-show-config"),
          ("sbatch",): captured(f"{V}-{capture}")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", for_launch=True)
    with pytest.raises(UserError, match="sbatch: error") as err:
        submit(SLURM, SLURM.render(spec), Path(".ft/rendered/tiny"), spec)
    assert "To fix: " in str(err.value) and hint in str(err.value)
    assert store.load_records() == [], "a failed submit records nothing"


@pytest.mark.parametrize("grace, warned", [("5m", True), ("5s", False)])
def test_a_stop_grace_longer_than_killwait_is_warned_at_submit(fake, grace, warned) -> None:
    """The test cluster's `scontrol show config` (KillWait=5): read at submit, not render."""
    runner = fake({("scontrol", "show", "config"): captured(f"{V}-scontrol-show-config")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", {"nodes": 2}, for_launch=True)
    spec.launch.stop_grace = grace
    notes = SLURM.cluster_notes(spec)
    assert runner.calls == [("scontrol", "show", "config")]
    assert bool(notes) == warned
    if warned:
        assert notes[0].startswith("launch.stop_grace is 300 s but this cluster's KillWait is "
                                   "5 s: `ft cancel` (scancel) SIGKILLs the ranks 5 s after")


def test_unreachable_controller_stops_before_writing_files(fake, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(base.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    fake({("scontrol", "ping"): captured(f"{V}-scontrol-ping-down")})
    spec = load_spec(REPO / "examples/tiny/tiny.yaml", for_launch=True)
    with pytest.raises(UserError, match="Slurmctld\\(primary\\) at vm is DOWN"):
        submit(SLURM, SLURM.render(spec), Path(".ft/rendered/tiny"), spec)
    assert not (tmp_path / ".ft").exists()


def test_cancel_runs_scancel(fake) -> None:
    runner = fake({("scancel",): captured(f"{V}-scancel-running")})
    assert SLURM.cancel(rec("4")) == ""
    assert runner.calls == [("scancel", "4")]
