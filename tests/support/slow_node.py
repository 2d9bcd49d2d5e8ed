"""Slow one emulated node's CPU right before its pre-flight, for tests/test_preflight_core.py.

Installed with FT_TRAINER_HOOKS=tests.support.slow_node:install on every node. Importing it
is the hook: `ft train` loads the hooks after its imports and before it joins the process
group, so a rank of node SLOW_NODE_ENV says so on its output and waits until the test has
moved it into the CPU-capped cgroup named by SLOW_CGROUP_ENV (a node's /sys is its network
namespace's own, so the cgroup tree is reached from the host, by the test). Capping it from
the start instead would make its imports (seconds of CPU) take minutes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOOK = "tests.support.slow_node:install"
SLOW_NODE_ENV = "FT_TEST_SLOW_NODE"
SLOW_CGROUP_ENV = "FT_TEST_SLOW_CGROUP"
READY = "slow-node: ready to be capped"
WAIT_S = 60


def install(trainer) -> None:
    """Nothing once training runs: the work was done at import."""


def _in_cgroup(name: str) -> bool:
    return any(line.endswith("/" + name)
               for line in Path("/proc/self/cgroup").read_text().splitlines())


def _wait_to_be_capped() -> None:
    name = os.environ[SLOW_CGROUP_ENV]
    print(f"{READY} (rank {os.environ.get('RANK')})", flush=True)
    deadline = time.monotonic() + WAIT_S
    while not _in_cgroup(name):
        if time.monotonic() > deadline:
            raise SystemExit(f"slow-node: never moved into cgroup {name}")
        time.sleep(0.05)


if os.environ.get("GROUP_RANK") is not None and \
        os.environ.get("GROUP_RANK") == os.environ.get(SLOW_NODE_ENV):
    _wait_to_be_capped()
