"""The local launcher's node group with real processes: any node's crash is seen, whichever
position it has, and the job's code follows the cluster rule."""

from __future__ import annotations

import subprocess
import time

from orchestrator.backends.local.node_group import NodeGroup


def _node(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script])


def test_a_crash_of_a_later_node_stops_the_earlier_one_still_running() -> None:
    """Node 0 would wait (in a collective) for an hour; node 1 crashes at once."""
    procs = [_node("sleep 3600"), _node("exit 3")]
    started = time.monotonic()
    try:
        code = NodeGroup(procs, grace_s=300).wait()
    finally:
        for proc in procs:
            proc.kill()
    assert code == 3
    assert time.monotonic() - started < 20  # SIGTERM ended node 0, not the hour
    assert procs[0].returncode == -15


def test_every_node_resumable_or_done_gives_the_resumable_code() -> None:
    procs = [_node("exit 0"), _node("sleep 0.5; exit 75")]
    assert NodeGroup(procs, grace_s=300).wait() == 75
