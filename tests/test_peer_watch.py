"""The ranks' heartbeats (trainer/distributed/peer_watch.py) on a real TCPStore, with real
processes, and the collective timeout windows on a real gloo group. The isolated two-node
job is in test_peer_loss.py; these cover what it cannot reach cheaply: a peer that finished
is not mistaken for a dead one, ranks are told apart from nodes, the windows switch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from transformers import TrainerControl

from orchestrator.node.peer_reports import waiting_on_peer
from tests.cli_runner import REPO
from tests.train_helpers import free_port
from trainer.distributed.peer_watch import DONE, PEER_LOST_EXIT_CODE, Member, PeerWatch
from trainer.distributed.process_group import CollectiveWindows, _env_s
from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free.errors import UserError
from trainer.torch_free.liveness import COLLECTIVE_ENV, PEER_ENV, SLOW_PHASE_ENV
from trainer.torch_free.training import TrainingConfig

# One rank of a 2-rank job on this host: heartbeats for `run_s`, then finishes (or not).
_RANK = textwrap.dedent("""
    import os, sys, time
    from trainer.distributed.peer_watch import PeerWatch
    from trainer.distributed.world_ranks import WorldRanks
    rank, port, run_s, finish = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
    watch = PeerWatch(WorldRanks(rank, 2, 0, 1, rank), 5,
                      {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
    watch.start()
    print("watching", flush=True)
    time.sleep(run_s)
    if finish == "finish":
        watch.finish()
    print("lived", flush=True)
""")


def _rank(rank: int, port: int, run_s: float, finish: str, report_dir) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FT_STOP_REPORT_DIR": str(report_dir)}
    return subprocess.Popen([sys.executable, "-c", _RANK, str(rank), str(port), str(run_s),
                             finish], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_frozen_rank_is_named_and_a_finished_one_is_not(tmp_path):
    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True,  # noqa: F841 - serves the test
                          wait_for_workers=False, timeout=timedelta(seconds=30))
    # Rank 1 finishes after 3 s; rank 0 lives on for 12 s more (a final save) untroubled.
    first = [_rank(0, port, 15, "finish", tmp_path), _rank(1, port, 3, "finish", tmp_path)]
    outs = [proc.communicate(timeout=60) for proc in first]
    assert [proc.returncode for proc in first] == [0, 0], outs
    # A new attempt (torchrun's restart count: fresh keys): rank 1 is frozen (SIGSTOP)
    # after 3 s of heartbeats.
    os.environ["TORCHELASTIC_RESTART_COUNT"] = "1"
    try:
        procs = [_rank(0, port, 60, "no", tmp_path), _rank(1, port, 60, "no", tmp_path)]
    finally:
        del os.environ["TORCHELASTIC_RESTART_COUNT"]
    try:
        assert procs[1].stdout.readline() == "watching\n"
        time.sleep(3)
        procs[1].send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        ended_after = time.monotonic() - frozen_at
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert procs[0].returncode == PEER_LOST_EXIT_CODE, err
    assert f"ft: node 1 ({socket.gethostname()}, 127.0.0.1) stopped answering" in err
    assert "(link down, node dead or process frozen): ending the job" in err
    # peer 5 s, counted from rank 1's last heartbeat, which can be up to one heartbeat
    # (1.25 s) before the SIGSTOP; the upper margin is for a loaded CI.
    assert 5 - 1.25 - 0.5 <= ended_after < 5 + 15, ended_after
    lost = json.loads((tmp_path / "peer-lost-rank-0.json").read_text())
    assert lost["finding"].startswith("node 1 (") and lost["peer_timeout_s"] == 5
    # What ft node tells a stop signal that came during the wait.
    assert waiting_on_peer(tmp_path).startswith(
        "the ranks are waiting on an unreachable peer, not saving: node 1 (")


def _watch_of(rank: int) -> PeerWatch:
    """Rank `rank` of 4 ranks on 2 nodes, its view filled in by hand (no threads)."""
    watch = PeerWatch(WorldRanks(rank, 4, rank % 2, 2, rank // 2), 20,
                      {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    watch.members = {r: Member(r, r // 2, f"h{r // 2}", f"10.0.0.{r // 2 + 1}")
                     for r in range(4)}
    watch.me = watch.members[rank]
    return watch


def test_whole_nodes_and_single_ranks_are_told_apart():
    now = time.monotonic()
    watch = _watch_of(0)
    watch.changed = {0: (9, now), 1: (9, now), 2: (5, now - 25), 3: (5, now - 25)}
    verdict, age = watch._verdict(now)
    assert (verdict, age) == ("node 1 (h1, 10.0.0.2) stopped answering", 25)
    assert watch._why(verdict) == "link down, node dead or process frozen"
    watch.changed[2] = (9, now)
    verdict, _ = watch._verdict(now)
    assert verdict == "rank(s) 3 on node 1 (h1, 10.0.0.2) stopped answering"
    assert watch._why(verdict) == "process frozen or stuck; the rest of its node answers"
    watch.changed[3] = (DONE + 5, now - 25)  # finished: not expected to answer
    assert watch._verdict(now) == (None, 0.0)
    cut_off = _watch_of(2)
    cut_off.changed = {r: (5, now - 30) for r in range(4)}
    cut_off.last_ok = now - 30
    verdict, age = cut_off._verdict(now)
    assert verdict.startswith("node 1 (h1, 10.0.0.2) cannot reach node 0 (h0, 10.0.0.1)")
    assert age == 30 and cut_off._why(verdict) == "link down or node 0 dead"


def test_the_collective_timeout_is_long_until_the_first_step_and_around_saves(monkeypatch):
    monkeypatch.setenv(COLLECTIVE_ENV, "40")
    monkeypatch.setenv(SLOW_PHASE_ENV, "300")
    assert not dist.is_initialized()
    store = dist.TCPStore("127.0.0.1", free_port(), is_master=True, wait_for_workers=False)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1,
                            timeout=timedelta(seconds=300))
    try:
        gloo = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
        windows = CollectiveWindows(TrainingConfig.model_validate(
            {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}]}))
        control = TrainerControl()
        windows.on_step_end(None, None, control)
        assert gloo.options._timeout == timedelta(seconds=40)  # steady after step 1
        control.should_save = True
        windows.on_step_end(None, None, control)
        assert gloo.options._timeout == timedelta(seconds=300)  # the save that follows
        windows.on_save(None, None, control)
        assert gloo.options._timeout == timedelta(seconds=40)
        windows.on_train_end(None, None, control)
        assert gloo.options._timeout == timedelta(seconds=300)  # the final model's save
    finally:
        dist.destroy_process_group()


def test_a_timeout_from_the_environment_must_be_whole_seconds(monkeypatch):
    """launch.env may set FT_PEER_TIMEOUT_S (the environment wins over the spec): nonsense
    there is a user error naming it, not a traceback from int()."""
    monkeypatch.setenv(PEER_ENV, "2m")
    with pytest.raises(UserError, match=r"FT_PEER_TIMEOUT_S='2m': give whole seconds"):
        _env_s(PEER_ENV, "2m")
    monkeypatch.setenv(PEER_ENV, "30")
    assert _env_s(PEER_ENV, "2m") == 30
    monkeypatch.delenv(PEER_ENV)
    assert _env_s(PEER_ENV, "2m") == 120
