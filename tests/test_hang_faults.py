"""A rank that is alive but makes no step (hung in its own code between steps: its heartbeat
goes on) while the others wait for it in the next step's collective. Before the step stamps
(trainer/distributed/step_progress.py) only the collective timeout ended it: rank 1 hung
after step 3 (collective 10m, peer 10s) was still running 137 s later, nobody named.
Now it is named by rank, node, hostname and address after max(5 x the median step time,
`launch.timeouts.progress`), found by the process group's collective count (it stays below
the others'), and the job ends with PEER_LOST_EXIT_CODE through every layer.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import yaml

from orchestrator.node.peer_reports import peer_lost
from orchestrator.process import run_cmd
from tests.cli_runner import REPO
from tests.support.hung_rank import RANK_ENV, STEP_ENV
from tests.support.isolation_checks import assert_removed, launch_namespaces, needs_isolation
from tests.test_peer_loss import _Lines
from tests.train_helpers import free_port, write_tiny_spec
from trainer.distributed.bad_nodes import NODE_EXITS_ENV, record_bad_nodes
from trainer.distributed.collective_failure import collective_failure, peers_named
from trainer.distributed.peer_watch import Member
from trainer.distributed.step_progress import TIMED_STEPS, LagJudge, Stamp, StepProgress
from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE, PROGRESS_ENV, Timeouts

PROGRESS_S = 10
# After the hang: the floor, a heartbeat to see it, torchrun and ft launch tearing both nodes
# down on a loaded 2-core machine. The collective timeout (10m) is far beyond it.
HANG_BOUND_S = PROGRESS_S + 50


def test_a_rank_hung_between_steps_is_named_and_ends_the_job(tmp_path, tiny_model_dir):
    hang_after = TIMED_STEPS + 2  # steps are timed first: no judgement before
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000, launch={
                               "nodes": 2, "env": {"OMP_NUM_THREADS": "1"},
                               "timeouts": {"collective": "10m", "peer": "10s",
                                            "progress": f"{PROGRESS_S}s"}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "FT_TRAINER_HOOKS": "tests.support.hung_rank:install", RANK_ENV: "1",
           STEP_ENV: str(hang_after)}
    code, ended_after, log, _ = _time_the_end(
        spec, tmp_path, env, "hang", HANG_BOUND_S + 60,
        lambda output: output.wait_for(f"rank 1 hangs after step {hang_after}", timeout_s=300))
    print(f"hung rank: the job ended {ended_after:.0f} s after the hang, exit {code}")
    assert code == PEER_LOST_EXIT_CODE, log[-4000:]
    assert ended_after < HANG_BOUND_S, f"{ended_after:.0f} s\n{log[-4000:]}"
    assert "a rank that the others wait for in a collective for max(5 x the median step " \
           f"time, {PROGRESS_S} s) is named and ends the job" in log
    named = "rank 1 on node 1 (node1, 10.210.0.2) has not joined the collective that rank 0 " \
        "waits in for "
    assert named in log, log[-4000:]
    assert f"it began step {hang_after}, rank 0 step " in log
    assert "alive but hung in its own code (data loading, a callback, a loop) while the " \
           "others wait for it: ending the job" in log
    # ft node says so with its exit code (the first node to end it: ft launch then stops
    # the other).
    assert re.search(rf"\[node\d\] ft node: rank \d ended the job: {re.escape(named)}"
                     rf".*: exit {PEER_LOST_EXIT_CODE}\n", log), log[-4000:]


def test_the_lag_judge_names_a_stuck_rank_not_a_slow_one():
    judge = LagJudge(floor_s=10)
    stuck = {0: Stamp(45, 6, False, 0.5), 1: Stamp(44, 5, False, 0.5)}
    assert judge.observe(stuck, 100.0) is None  # rank 1 behind and still from now on
    assert judge.observe(stuck, 109.0) is None
    lag = judge.observe(stuck, 110.5)
    assert (lag.rank, lag.lead, lag.stamp.seq, lag.limit_s, lag.for_s) == (1, 0, 44, 10, 10.5)
    # Behind at every look but moving: slow, never named.
    judge = LagJudge(floor_s=10)
    for look in range(30):
        moving = {0: Stamp(100 + 2 * look, 9, False, 0.5), 1: Stamp(99 + 2 * look, 9, False, 0.5)}
        assert judge.observe(moving, float(look)) is None
    # 5 x the median step time when that is longer than the floor.
    judge = LagJudge(floor_s=10)
    slow_steps = {0: Stamp(45, 6, False, 4.0), 1: Stamp(44, 6, False, 4.0)}
    judge.observe(slow_steps, 0.0)
    assert judge.observe(slow_steps, 19.0) is None
    assert judge.observe(slow_steps, 20.0).limit_s == 20
    # A save anywhere (or start-up) resets the clock; so do untimed steps.
    judge.observe({0: Stamp(45, 6, True, 4.0), 1: Stamp(44, 6, False, 4.0)}, 21.0)
    assert judge.observe(slow_steps, 30.0) is None
    untimed = {0: Stamp(9, 3, False, None), 1: Stamp(8, 2, False, None)}
    assert LagJudge(10).observe(untimed, 0.0) is None
    # Caught up: no longer behind.
    judge.observe({0: Stamp(50, 8, False, 4.0), 1: Stamp(50, 8, False, 4.0)}, 40.0)
    assert judge.stuck_since == {}


def test_a_step_that_saved_is_not_timed():
    progress = StepProgress(collectives=lambda: 7)
    progress.begin(1)  # start-up: slow until the first step ends
    progress.slow_phase(False)
    for step in range(2, 3 + TIMED_STEPS):  # step 1 took the start-up: not timed
        progress.begin(step)
    assert progress.stamp().startswith(f"7,{2 + TIMED_STEPS},0,")
    assert progress.stamp().split(",")[3] != ""
    progress.slow_phase(True)  # a save
    progress.slow_phase(False)
    progress.begin(9)
    assert len(progress._times) == TIMED_STEPS  # the step that saved was not timed
    progress.collectives = lambda: 1 / 0  # the group destroyed: the last count stays
    assert progress.stamp().startswith("7,9,0,")


@pytest.mark.parametrize(("value", "said"), [
    ("5s", "`progress: 5s` is too short; use at least 10s"),
    ("soon", "`progress: soon` is not a duration; use a number and a unit (s, m, h), e.g. "
             "10m (or off)"),
])
def test_nonsense_progress_timeouts_are_refused(value, said):
    with pytest.raises(ValueError, match=re.escape(said)):
        Timeouts.model_validate({"progress": value})
    # YAML's bare `off` is the boolean false.
    assert Timeouts.model_validate(yaml.safe_load("progress: off")).env()[PROGRESS_ENV] == "0"
    assert Timeouts().env()[PROGRESS_ENV] == "60"


@needs_isolation
def test_a_failed_collective_names_the_node_at_the_other_end(tmp_path, tiny_model_dir):
    """Node 1's TCP connections are torn down mid-training (`ss -K` in its network
    namespace): each rank's gloo collective fails ("Connection reset by peer"). Before, each
    rank printed gloo's traceback and ft node said exit 1; now each names the node at the
    other end by the address in the error, and the job ends with PEER_LOST_EXIT_CODE."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000, launch={
                               "nodes": 2, "env": {"OMP_NUM_THREADS": "1"},
                               "timeouts": {"collective": "10m", "peer": "10s"}})
    code, ended_after, log, stem = _time_the_end(
        spec, tmp_path, {**os.environ, "PYTHONPATH": str(REPO)}, "cut", 120, _cut_node_1)
    print(f"failed collective: the job ended {ended_after:.0f} s after the cut, exit {code}")
    assert code == PEER_LOST_EXIT_CODE, log[-4000:]
    assert ended_after < 60, log[-4000:]
    assert re.search(r"ft: a collective failed on rank 0 of node 0 \(node0, 10\.210\.0\.1\) "
                     r"\(RuntimeError: [^\n]*\); the peer at the other end: node 1 \(node1, "
                     r"10\.210\.0\.2\): ending the job", log), log[-4000:]
    assert "third_party/gloo" not in log.split("ft: a collective failed", 1)[1].split("\n")[0]
    assert "ended the job: a collective failed on rank " in log and \
        f": exit {PEER_LOST_EXIT_CODE}" in log, log[-4000:]
    assert_removed(stem)


def test_collective_failures_are_told_from_other_errors():
    gloo = RuntimeError("[/x/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
                        "[10.0.0.2]:9378: Connection reset by peer.")
    assert collective_failure(gloo) is gloo
    try:
        try:
            raise gloo
        except RuntimeError as inner:
            raise ValueError("while logging") from inner
    except ValueError as outer:
        assert collective_failure(outer) is gloo
    assert collective_failure(RuntimeError("CUDA out of memory")) is None
    me = Member(0, 0, "h0", "10.0.0.1")
    members = {0: me, 1: Member(1, 1, "h1", "10.0.0.2"), 2: Member(2, 1, "h1", "10.0.0.2"),
               3: Member(3, 2, "h2", "10.0.0.22")}
    assert [m.node_rank for m in peers_named(str(gloo), members, me)] == [1]
    # All on one loopback: the address tells nothing.
    shared = {r: Member(r, r, "h", "127.0.0.1") for r in range(2)}
    assert peers_named("Read error [127.0.0.1]:1", shared, shared[0]) == []


def test_a_named_node_is_left_for_the_batch_script_and_ft_node_reads_the_finding(tmp_path):
    record_bad_nodes([1, 3], "node 1 stopped answering", {NODE_EXITS_ENV: str(tmp_path)})
    record_bad_nodes([1], "again", {NODE_EXITS_ENV: str(tmp_path)})  # another rank, same node
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad-node-1", "bad-node-3"]
    assert (tmp_path / "bad-node-1").read_text() == "again\n"
    record_bad_nodes([2], "no batch script", {})  # not under Slurm: the log alone
    assert not (tmp_path / "bad-node-2").exists()
    reports = tmp_path / "reports"
    reports.mkdir()
    assert peer_lost(reports) is None
    (reports / "peer-lost-rank-0.json").write_text(
        '{"rank": 0, "finding": "node 1 (h1, 10.0.0.2) stopped answering", "peer_timeout_s": 10}')
    assert peer_lost(reports) == "rank 0 ended the job: node 1 (h1, 10.0.0.2) stopped answering"


def _time_the_end(spec, tmp_path, env: dict, what: str, wait_s: float, fault):
    """`ft launch --backend local` of `spec`; `fault(output)` returns once the fault is in
    place (what it returns comes back too). (exit code, seconds from the fault to the job's
    end, the log, fault's result); the log is kept in tmp_path/job.log for a failure."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--master-port", str(free_port())],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output = _Lines(proc)
    code, ended_after, made = None, -1.0, None
    try:
        made = fault(output)
        at = time.monotonic()
        code = proc.wait(timeout=wait_s)
        ended_after = time.monotonic() - at
    finally:
        proc.kill()
        proc.wait()
        output.thread.join(10)
        (tmp_path / "job.log").write_text(f"{output.text()}\nended {ended_after:.1f} s after "
                                          f"the {what}, exit {code}\n")
    return code, ended_after, output.text(), made


def _cut_node_1(output) -> str:
    """Once training runs, tear down node 1's TCP connections; the namespaces' stem."""
    output.wait_for("'loss'", timeout_s=300)
    stem = launch_namespaces(output.text())
    cut = run_cmd(["ip", "netns", "exec", f"{stem}-n1", "ss", "-K", "-t", "state",
                   "established"])
    assert cut.returncode == 0, cut.stderr
    return stem
