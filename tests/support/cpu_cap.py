"""A CPU-capped cgroup for a test (cgroup v2 `cpu.max` where the unified tree has the cpu
controller, else v1's `cpu.cfs_quota_us`), and moving processes into it from the host."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

V2, V1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "capping a node's CPU needs root (cgroups)"
    if _v2_has_cpu() or (V1 / "cpu.cfs_quota_us").exists():
        return None
    return "no cgroup with the cpu controller here (v2 cpu.max or v1 cpu.cfs_quota_us)"


def _v2_has_cpu() -> bool:
    try:
        return "cpu" in (V2 / "cgroup.controllers").read_text().split()
    except OSError:
        return False


@contextlib.contextmanager
def capped_cgroup(percent_of_a_core: float) -> Iterator[tuple[str, Path]]:
    """(its name, its cgroup.procs file); removed afterwards (its processes have ended)."""
    name = f"ft-test-slow-{secrets.token_hex(4)}"
    quota = int(PERIOD_US * percent_of_a_core / 100)
    if _v2_has_cpu():
        path = V2 / name
        path.mkdir()
        (path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
    else:
        path = V1 / name
        path.mkdir()
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(quota))
    try:
        yield name, path / "cgroup.procs"
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()


def processes_with(env: dict[str, str]) -> list[int]:
    """Host pids of the processes whose environment has every KEY=VALUE of `env`."""
    wanted = {f"{k}={v}".encode() for k, v in env.items()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            variables = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if wanted <= variables:
            found.append(int(entry.name))
    return found


def move(pids: list[int], procs_file: Path) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, OSError):
            procs_file.write_text(str(pid))
