"""`ft launch --backend local --nodes 2`: two emulated nodes, each running `ft node` with
the variables the emulated backend sets, a real gloo rendezvous, real data-parallel training.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from orchestrator.backends.local.isolation import unavailable_reason
from tests.cli_runner import REPO, run_ft
from tests.support.isolation_checks import assert_removed, launch_namespaces
from tests.support.sample_ledger import HOOK, weights_digest
from tests.train_helpers import free_port, shared_volumes, summary, write_tiny_spec
from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE


def _rows(path) -> list[str]:
    return [json.loads(line)["sha1"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("emulate", ["dstack", "modal"])
def test_two_emulated_nodes_shard_the_data_and_agree(tmp_path, tiny_model_dir, emulate):
    """Output and cache shared through `launch.volumes` (how dstack and Modal share
    storage). Slurm's variables, with each node's storage its own, are trained with in
    test_local_isolation.py: one launch each keeps the suite's time."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=6, save_steps=6, eval_steps=3,
                           launch={"volumes": shared_volumes(tmp_path)})
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2", "--emulate",
                    emulate, "--master-port", str(free_port()), cwd=tmp_path,
                    env={**os.environ, "FT_TRAINER_HOOKS": HOOK})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    log = result.stdout
    assert f"[node0] ft node: backend {emulate}" in log and "[node1] ft node: node 1 of 2" in log
    assert "--nnodes 2 --node-rank 1" in log
    assert "'step': 6," in log  # every metrics line names its step (`ft launch --watch`)
    out = tmp_path / "out"
    assert summary(out)["world_size"] == 2
    # Each rank trained on different rows, and 6 steps x 4 rows x 2 ranks were seen.
    rank0, rank1 = _rows(out / "ft-samples-rank0.jsonl"), _rows(out / "ft-samples-rank1.jsonl")
    assert len(rank0) == len(rank1) == 6 * 4
    assert not set(rank0) & set(rank1), "both ranks trained on the same rows"
    # Data-parallel replicas end identical, and what rank 0 saved is that state.
    final = {(out / f"ft-final-rank{r}.sha1").read_text() for r in (0, 1)}
    assert len(final) == 1, "the ranks' weights diverged"
    saved = load_file(out / "adapter_model.safetensors")
    assert final == {weights_digest(saved)}, "the saved adapter is not the trained state"
    checkpoint = load_file(out / "checkpoint-6" / "adapter_model.safetensors")
    assert weights_digest(checkpoint) == weights_digest(saved)
    # Both nodes prepared the data into the one shared cache: one complete entry.
    assert [p.name for p in (tmp_path / "prepared").iterdir() if p.name.startswith(".")] == []
    assert len(list((tmp_path / "prepared").iterdir())) == 1
    if "isolated nodes" in result.stderr:
        assert f"shared storage: {tmp_path}; private to each node: none" in result.stderr
        assert_removed(launch_namespaces(result.stderr))


def test_a_failing_node_stops_the_job(tmp_path, tiny_model_dir):
    """One node cannot start (its data does not parse: a missing file would already be
    refused by the launch's own checks): the launch fails fast and says so."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    (tmp_path / "broken.jsonl").write_text('{"instruction": "x", "output": \n')
    spec.write_text(re.sub(r"\S*alpaca\.jsonl", str(tmp_path / "broken.jsonl"),
                           spec.read_text()))
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=tmp_path)
    assert result.returncode != 0
    assert "broken.jsonl:1: not valid JSON" in result.stdout
    if unavailable_reason() is None:  # isolated unasked, and a crashed job cleans up
        assert_removed(launch_namespaces(result.stderr))
    else:
        assert "share this host" in result.stderr


def _workers_of_rank(rank: int, job_dir: Path) -> list[int]:
    """PIDs of this job's training processes (torchrun's children) that have RANK=<rank>.
    Only this job's (its spec lies under job_dir): other runs on the machine are not ours
    to freeze."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"train" in cmdline and b"orchestrator.cli" in cmdline \
                and f"RANK={rank}".encode() in environ \
                and any(str(job_dir).encode() in part for part in cmdline):
            found.append(int(proc.name))
    return found


def test_a_frozen_peer_is_named_and_ends_the_job(tmp_path, tiny_model_dir):
    """Rank 1 freezes mid-training (SIGSTOP: its sockets stay open, nothing errors). Its
    heartbeat stops, so rank 0 names it and ends the job after `launch.timeouts.peer`, long
    before the collective timeout (10m here) would. The nodes share this host here
    (--no-isolate), so that mode stays tested too."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000, launch={
                               "nodes": 2, "env": {"OMP_NUM_THREADS": "1"},
                               "timeouts": {"collective": "10m", "peer": "10s"}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "launch", str(spec),
                             "--backend", "local", "--no-isolate",
                             "--master-port", str(free_port())],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stopped: list[int] = []
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "'loss'" in line and not stopped:
                stopped = _workers_of_rank(1, tmp_path)
                assert stopped, "no rank-1 training process found"
                for pid in stopped:
                    os.kill(pid, signal.SIGSTOP)
                frozen_at = time.monotonic()
        code = proc.wait(timeout=120)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
    log = "".join(lines)
    assert stopped and code not in (0, 75)
    # Run on the shared host (--no-isolate keeps that mode tested), which it says.
    assert "the 2 node(s) share this host (loopback, /tmp, pids, every directory): " \
           "--no-isolate" in log
    # Named by node, hostname and address (the nodes share this host's name and loopback).
    assert f"ft: node 1 ({socket.gethostname()}, 127.0.0.1) stopped answering" in log, \
        log[-3000:]
    # 10 s of silence, a heartbeat to notice it and the launcher's shutdown of the frozen
    # node (SIGKILL after its 30 s), not the 10 minutes of the collective timeout.
    ended_after = time.monotonic() - frozen_at
    print(f"frozen peer: the job ended {ended_after:.0f} s after the SIGSTOP, exit {code}")
    assert ended_after < 80
    assert code == PEER_LOST_EXIT_CODE, log[-3000:]  # a lost peer, documented
