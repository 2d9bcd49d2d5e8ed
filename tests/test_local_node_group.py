"""The local launcher's node group with real processes: any node's crash is seen, whichever
position it has, the job's code follows the cluster rule (128 + N for a node killed by
signal N, never the raw status), the failed node is named, and a stop is held for a node
until it catches it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from orchestrator.backends.local.node_group import NodeGroup


def _node(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script])


def _wait(*procs: subprocess.Popen) -> int:
    try:
        group = NodeGroup(grace_s=300)
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    try:
        for rank, proc in enumerate(procs):
            group.add(proc, f"node {rank}")
        return group.wait()
    finally:
        group.close()
        for proc in procs:
            proc.kill()


def test_a_crash_of_a_later_node_stops_the_earlier_one_still_running() -> None:
    """Node 0 would wait (in a collective) for an hour; node 1 crashes at once."""
    procs = [_node("exec sleep 3600"), _node("exit 3")]
    started = time.monotonic()
    assert _wait(*procs) == 3
    assert time.monotonic() - started < 20  # SIGTERM ended node 0, not the hour
    assert procs[0].returncode == -15


def test_every_node_resumable_or_done_gives_the_resumable_code() -> None:
    assert _wait(_node("exit 0"), _node("sleep 0.5; exit 75")) == 75


def test_a_node_killed_by_a_signal_gives_128_plus_it_and_is_named(capsys) -> None:
    assert _wait(_node("exec sleep 3600"), _node("kill -9 $$")) == 137  # not 247 (the raw -9)
    err = capsys.readouterr().err
    assert "ft launch: node 1 was killed by SIGKILL (exit 137); stopping the other" in err
    assert "ft launch: exit 137: node 1 failed first" in err


# A node that needs a moment before it catches SIGTERM (an `ft node` still importing), then
# saves and stops: a SIGTERM to `ft launch` meanwhile must wait for it, not kill it.
SLOW_STARTER = """
import signal, sys, time
time.sleep(1.5)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))
time.sleep(60)
"""


def test_a_stop_waits_for_a_node_that_does_not_catch_it_yet() -> None:
    node = subprocess.Popen([sys.executable, "-c", SLOW_STARTER])
    group = NodeGroup(grace_s=300)
    try:
        group.add(node, "node 0")
        os.kill(os.getpid(), signal.SIGTERM)  # to `ft launch` (this process)
        assert group.wait() == 75  # 143 if it had been sent at once
    finally:
        group.close()
        node.kill()
