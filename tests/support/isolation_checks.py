"""What the tests check after an isolated local launch: which namespaces it made (from
the line `ft launch` prints) and that none of them is left."""

from __future__ import annotations

import re

import pytest

from orchestrator.backends.local.isolation import unavailable_reason
from orchestrator.backends.local.network import list_namespaces
from orchestrator.process import run_cmd

needs_isolation = pytest.mark.skipif(unavailable_reason() is not None,
                                     reason=str(unavailable_reason()))
_STEM = re.compile(r"network namespaces (ftlocal-\d+-[0-9a-f]+)-n0")


def launch_namespaces(log: str) -> str:
    """The name stem of the namespaces a launch reported making."""
    match = _STEM.search(log)
    assert match, f"no isolation line in:\n{log[:2000]}"
    return match.group(1)


def assert_removed(stem: str) -> None:
    assert [name for name in list_namespaces() if name.startswith(stem)] == []
    assert stem not in run_cmd(["ip", "-o", "link"]).stdout  # no veth end left on this host
