"""One writer per output_dir: the lease, held by real processes (no training here; the runs
are in tests/test_output_lease_runs.py)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator.node.job_id import job_id_env
from tests.cli_runner import REPO, run_ft
from trainer.checkpoint.output_lease import LEASE_FILE, TTL_ENV, OutputLease
from trainer.torch_free.errors import UserError

HOLD = """
import sys, time
from pathlib import Path
from trainer.checkpoint.output_lease import OutputLease
lease = OutputLease(Path(sys.argv[1]))
lease.acquire()
print("held", flush=True)
time.sleep(300)
"""


def _slurm_job(job_id: str) -> dict[str, str]:
    """The job id `ft node` exports to the ranks of Slurm job `job_id`."""
    return job_id_env(backends.get("slurm"), {"SLURM_JOB_ID": job_id})


@pytest.fixture
def holder(tmp_path):
    """A live process on this host that holds the lease of tmp_path/out as Slurm job 111."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **_slurm_job("111"), TTL_ENV: "2"}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def _lease(tmp_path, **env) -> OutputLease:
    return OutputLease(tmp_path / "out", env={TTL_ENV: "120", **env})


def test_a_live_holder_refuses_another_job_naming_itself_and_the_ways_out(tmp_path, holder):
    time.sleep(2.5)  # the holder's heartbeat (TTL 2 s: every 0.5 s) keeps it fresh
    with pytest.raises(UserError) as refused:
        _lease(tmp_path, **_slurm_job("222"), **{TTL_ENV: "2"}).acquire()
    message = str(refused.value)
    assert f"output_dir {tmp_path / 'out'} is in use by another run" in message
    assert f"pid {holder.pid}" in message and "job SLURM_JOB_ID=111" in message
    assert f"host {os.uname().nodename}" in message and "since 20" in message
    assert "last heartbeat 0 s ago" in message or "last heartbeat 1 s ago" in message
    assert "ft train --force" in message and "ft launch ... --force" in message
    assert holder.poll() is None


def test_a_sigkilled_holders_lease_is_taken_at_once(tmp_path, holder, caplog):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lease = _lease(tmp_path)  # TTL 120 s: only the dead pid makes it stale now
    with caplog.at_level(logging.WARNING, logger="ft.lease"):
        lease.acquire()
    assert f"its process (pid {holder.pid} on this host) is gone" in caplog.text
    assert json.loads((tmp_path / "out" / LEASE_FILE).read_text())["pid"] == os.getpid()
    lease.release()
    assert not (tmp_path / "out" / LEASE_FILE).exists()


def test_a_requeued_attempt_of_the_same_job_takes_over_its_lease(tmp_path, holder, caplog):
    with caplog.at_level(logging.WARNING, logger="ft.lease"):
        _lease(tmp_path, **_slurm_job("111")).acquire()
    assert "a previous attempt of this job (SLURM_JOB_ID=111)" in caplog.text


def test_force_takes_a_live_lease_and_the_old_holder_does_not_remove_it(tmp_path, holder,
                                                                         caplog):
    forced = _lease(tmp_path, FT_FORCE_LEASE="1")
    with caplog.at_level(logging.WARNING, logger="ft.lease"):
        forced.acquire()
    assert "forced (FT_FORCE_LEASE=1, --force)" in caplog.text
    holder.send_signal(signal.SIGTERM)  # its release must leave the new holder's lease
    holder.wait()
    assert json.loads((tmp_path / "out" / LEASE_FILE).read_text())["token"] == \
        forced.mine["token"]
    forced.release()


def _foreign_lease(out: Path, heartbeat_age_s: float) -> None:
    """A lease another node's run wrote: its pid means nothing here."""
    out.mkdir()
    lease = out / LEASE_FILE
    lease.write_text(json.dumps({"host": "gpu-node-7", "boot_id": "x", "pid_ns": 1, "pid": 1,
                                 "job": "SLURM_JOB_ID=9", "since": time.time() - 3600,
                                 "token": "abc"}))
    os.utime(lease, (time.time() - heartbeat_age_s,) * 2)


def test_another_nodes_lease_holds_while_fresh_and_expires_with_its_heartbeat(tmp_path,
                                                                               caplog):
    _foreign_lease(tmp_path / "out", heartbeat_age_s=30)
    with pytest.raises(UserError, match="host gpu-node-7, pid 1, job SLURM_JOB_ID=9"):
        _lease(tmp_path).acquire()
    os.utime(tmp_path / "out" / LEASE_FILE, (time.time() - 200,) * 2)
    lease = _lease(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ft.lease"):
        lease.acquire()
    assert "its last heartbeat was 200 s ago (TTL 120 s)" in caplog.text
    lease.release()


def test_the_holder_renews_its_heartbeat(tmp_path):
    lease = _lease(tmp_path, **{TTL_ENV: "2"})
    lease.acquire()
    path = tmp_path / "out" / LEASE_FILE
    os.utime(path, (time.time() - 60,) * 2)
    time.sleep(1.5)
    assert time.time() - path.stat().st_mtime < 1.5
    lease.release()
    assert not path.exists() and not list(path.parent.glob(".ft-lease*"))


def test_launch_force_and_override_go_into_the_jobs_environment(tmp_path):
    """`ft launch --force --override` reaches every rank of a cluster job through the job's
    environment, shown in the rendered file; without the flags nothing is added."""
    spec = str(REPO / "examples" / "tiny" / "tiny.yaml")
    flagged = run_ft("launch", spec, "--backend", "slurm", "--dry-run", "--force", "--override",
                     cwd=tmp_path)
    assert flagged.returncode == 0, flagged.stderr[-3000:]
    assert "export FT_FORCE_LEASE=1\n" in flagged.stdout
    assert "export FT_RESUME_OVERRIDE=1\n" in flagged.stdout
    plain = run_ft("launch", spec, "--backend", "slurm", "--dry-run", cwd=tmp_path)
    assert plain.returncode == 0 and "FT_FORCE_LEASE" not in plain.stdout
