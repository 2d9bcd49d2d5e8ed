"""On the real Slurm of tests/support/slurm_cluster.py (three nodes, two a job): a requeue
excludes the node found at fault, within launch.retry.max_restarts.

The batch script (templates/slurm.sbatch.j2) reads the nodes named at fault from the
attempt's FT_NODE_EXITS (bad-node-<SLURM_NODEID>, written by the rank that named the node:
trainer/distributed/bad_nodes.py) and from its own watch (a node that never reported), and
adds them to the job's ExcNodeList after `scontrol requeue`. The workspace and helpers are
test_slurm_real.py's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

import pytest

from orchestrator.backends.slurm.jobs import parse_scontrol_job
from tests.support.slurm_cluster import NODES, slurm_cluster  # noqa: F401
from tests.test_slurm_real import (  # noqa: F401 - workspace is a fixture
    NODE_LOSS_BOUND_S,
    Workspace,
    _job_processes,
    _launch_endless_until_training,
    _submitted_ref,
    _wait_for,
    _wait_for_idle_nodes,
    _wait_for_log,
    _wait_for_losses,
    workspace,
    write_spec,
)

pytestmark = pytest.mark.slow


def test_a_frozen_node_is_named_and_the_requeue_excludes_it(
        workspace: Workspace) -> None:  # noqa: F811
    """The ranks of the job's second node freeze (SIGSTOP: alive to Slurm, silent to the
    others). Node 0's heartbeat judge names it after launch.timeouts.peer and leaves its node
    rank in FT_NODE_EXITS; its `ft node` exits 69, srun ends the step, and the batch script
    requeues the job as a node failure with that node in the job's ExcNodeList (updated
    after `scontrol requeue`: Slurm 22.05 refuses it for a running job, "Job is no longer
    pending execution"), on top of what was excluded at submission. Attempt 2 runs on the
    two nodes left: the third node of the test cluster and the healthy one."""
    ws = workspace
    name = "tiny-exclude"
    ref, job_id = _launch_endless_until_training(ws, name, timeouts={"peer": "10s"})
    first = _job_nodes(ws, job_id)
    bad = first[1]
    err = ws.root / f"{name}-{job_id}.err"
    frozen = [pid for pid, env in _job_processes(job_id)
              if env.get("SLURM_NODEID") == "1" and env.get("RANK") is not None]
    assert frozen, "no rank of the job on its second node"
    frozen_at = time.monotonic()
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        _wait_for_log(ws, err, "ft: attempt 1 stopped:", timeout_s=NODE_LOSS_BOUND_S)
        print(f"{bad} frozen: attempt 1 ended after {time.monotonic() - frozen_at:.0f} s")
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _wait_for_log(ws, err, "ft: the next attempt excludes node(s)")
    log = err.read_text()
    assert f"ft: node 1 ({socket.gethostname()}, 127.0.0.1) stopped answering" in log, log
    assert "ft node: rank 0 ended the job: node 1 (" in log and ": exit 69" in log, log
    assert "ft: attempt 1 stopped: node failure (exit " in log, log
    assert "; requeueing (restart 1 of 3)" in log, log
    assert f"ft: the next attempt excludes node(s) {bad} (found at fault: {bad})" in log, log
    job = parse_scontrol_job(ws.cluster.run("scontrol", "-o", "show", "job", job_id).stdout)
    assert job["ExcNodeList"] == bad, job
    pending = _wait_for(ws, ref, "PENDING", timeout_s=120)
    assert "requeued 1 time (attempt 1: node failure)" in pending, pending
    ws.cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    _wait_for_losses(ws, ws.root / f"{name}-{job_id}.out", 1, after="attempt 2")
    second = _job_nodes(ws, job_id)
    assert bad not in second and len(second) == 2, (first, second)
    assert set(second) == set(NODES) - {bad}, second
    ws.cluster.run("scancel", job_id)
    _wait_for(ws, ref, "CANCELLED", timeout_s=60)
    _wait_for_idle_nodes(ws)


def _job_nodes(ws: Workspace, job_id: str) -> list[str]:
    """The running attempt's nodes, in SLURM_NODEID order."""
    nodelist = ws.cluster.run("squeue", "-h", "-j", job_id, "-o", "%N").stdout.strip()
    return ws.cluster.run("scontrol", "show", "hostnames", nodelist).stdout.split()


PREFLIGHT_FAILS = """#!/bin/bash
# Stands in for `ft node` (no training): the first attempt's pre-flight fails (exit 78) on
# every node, as the broadcast verdict makes it; with FAKE_BAD_NODE set, node 0 first names
# node $FAKE_BAD_NODE in FT_NODE_EXITS as trainer/distributed/bad_nodes.py does. Later
# attempts finish at once.
attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))
echo "fake ft node $SLURM_NODEID on $SLURMD_NODENAME: attempt $attempt" >&2
if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then exit 0; fi
if [ -n "${FAKE_BAD_NODE:-}" ] && [ "$SLURM_NODEID" = 0 ]; then
  echo "pre-flight: node $FAKE_BAD_NODE is slow" > "$FT_NODE_EXITS/bad-node-$FAKE_BAD_NODE"
fi
exit 78
"""


def test_a_preflight_that_names_a_node_is_requeued_without_it_and_one_that_names_none_is_not(
        workspace: Workspace) -> None:  # noqa: F811
    """The batch script's side of a failed pre-flight (a stand-in `ft node`, no training). A
    one-node job submitted with `--exclude=n3` whose pre-flight names its node (n1): a node
    failure, requeued with n1 added to the exclusion (n3 kept), and attempt 2 runs on n2. A
    pre-flight that names no node would fail the same way again: not requeued."""
    ws = workspace
    fake_bin = ws.root / "fake-preflight-bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "ft").write_text(PREFLIGHT_FAILS)
    (fake_bin / "ft").chmod(0o755)
    path = {"PATH": f"{fake_bin}:/usr/bin:/bin"}
    name = "tiny-preflight-bad"
    spec = write_spec(ws, name, launch={"env": {**path, "FAKE_BAD_NODE": "0"}, "nodes": 1,
                                        "slurm": {"extra_sbatch": ["--exclude=n3"]}})
    launched = ws.ft("launch", spec, "--backend", "slurm")
    assert launched.returncode == 0, launched.stderr
    ref = _submitted_ref(launched.stdout)
    job_id = ref.split(":")[1]
    err = ws.root / f"{name}-{job_id}.err"
    _wait_for_log(ws, err, "ft: the next attempt excludes node(s)")
    log = err.read_text()
    assert "fake ft node 0 on n1: attempt 1" in log, log
    assert "ft: attempt 1 stopped: node failure (exit 78); requeueing (restart 1 of 3)" in log
    assert "ft: the next attempt excludes node(s) n1,n3 (found at fault: n1)" in log, log
    job = parse_scontrol_job(ws.cluster.run("scontrol", "-o", "show", "job", job_id).stdout)
    assert ws.cluster.run("scontrol", "show", "hostnames", job["ExcNodeList"]).stdout.split() \
        == ["n1", "n3"], job
    _wait_for(ws, ref, "PENDING", timeout_s=60)
    ws.cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    final = _wait_for(ws, ref, "SUCCEEDED", timeout_s=120)
    assert "requeued 1 time (attempt 1: node failure)" in final, final
    assert "fake ft node 0 on n2: attempt 2" in err.read_text(), err.read_text()

    name = "tiny-preflight-none"
    spec = write_spec(ws, name, launch={"env": path})
    launched = ws.ft("launch", spec, "--backend", "slurm", "--nodes", "2")
    assert launched.returncode == 0, launched.stderr
    ref = _submitted_ref(launched.stdout)
    job_id = ref.split(":")[1]
    _wait_for(ws, ref, "FAILED", timeout_s=60)
    log = (ws.root / f"{name}-{job_id}.err").read_text()
    assert "ft: attempt 1 stopped: pre-flight failed (exit 78); not requeueing" in log, log
    assert "excludes" not in log, log
    _wait_for_idle_nodes(ws)
