"""NCCL's own log, kept off the console and read back: which transport NCCL chose.

NCCL says which network it picked (IB, Socket, AWS Libfabric) only at INFO level, hundreds of
lines per rank. When the user set no NCCL_DEBUG, ft node sends that log to one file per
process (NCCL expands %h and %p), and names the fabric the job should use between nodes;
the trainer prints one line per node after its first collective
(trainer/distributed/nccl_log.py) and warns when NCCL fell back to TCP sockets under an
RDMA profile. A user's NCCL_DEBUG is left as it is. Since NCCL then writes its WARN lines
to the file too, a failed run gets them printed here.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from orchestrator.clusters import ClusterProfile
from orchestrator.node.fabric import FabricReport
from trainer.torch_free.nccl_env import (
    FABRIC_EXPECTED,
    FABRIC_EXPECTED_BUSBW,
    FABRIC_EXPECTED_BY,
    NCCL_LOG_FILE_NAME,
    NCCL_LOG_MARKER,
    NCCL_LOG_SUBSYS,
)

LOG_DIR_ENV = "FT_NCCL_LOG_DIR"  # where the files go (default: .ft/nccl in the job's directory)
SHOWN_WARNINGS = 20


def log_dir(environ: Mapping[str, str], cwd: Path, create: bool) -> Path:
    """Where NCCL's files go; made now when `create` (NCCL cannot open a file in a missing
    or read-only folder, and then logs INFO to the console), else in the temp folder."""
    wanted = Path(environ.get(LOG_DIR_ENV) or cwd / ".ft" / "nccl").absolute()
    if not create:
        return wanted
    for directory in (wanted, Path(tempfile.gettempdir()) / "ft-nccl"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if os.access(directory, os.W_OK):
                return directory
        except OSError:
            continue
    return wanted


def nccl_log_env(environ: Mapping[str, str], directory: Path, profile: ClusterProfile,
                 report: FabricReport) -> tuple[dict[str, str], list[str]]:
    """(variables to set, notes); nothing the environment already has is replaced."""
    expected, by = expected_fabric(profile, report)
    wanted = {FABRIC_EXPECTED: expected, FABRIC_EXPECTED_BY: by}
    if profile.expected_internode_busbw_gbs:
        wanted[FABRIC_EXPECTED_BUSBW] = f"{profile.expected_internode_busbw_gbs:g}"
    if "NCCL_DEBUG" in environ:
        notes = [f"NCCL_DEBUG={environ['NCCL_DEBUG']} comes from the environment: NCCL logs "
                 "where it says; " + ("the transport line reads NCCL_DEBUG_FILE"
                                      if _readable(environ) else
                                      "the transport NCCL chooses is not reported (leave "
                                      "NCCL_DEBUG unset to have ft report it)")]
    else:
        wanted.update({"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": NCCL_LOG_SUBSYS,
                       "NCCL_DEBUG_FILE": str(directory / NCCL_LOG_FILE_NAME),
                       NCCL_LOG_MARKER: "ft"})
        notes = [f"NCCL's INFO log ({NCCL_LOG_SUBSYS}) goes to {directory}/nccl.<host>.<pid>"
                 ".log, one file per process, not the console; each node prints the "
                 "transport NCCL chose after the first collective"]
    return {k: v for k, v in wanted.items() if k not in environ}, notes


def expected_fabric(profile: ClusterProfile, report: FabricReport) -> tuple[str, str]:
    """(fabric NCCL should use between nodes, who says so)."""
    if report.single_host:
        return "single-host", "ft node (every node runs on this host)"
    if profile.fabric != "auto":
        return profile.fabric, f"the cluster profile `{profile.name}`"
    found = f"HCAs {', '.join(report.hcas)}" if report.hcas else "no RDMA device"
    return report.fabric, f"ft node, which found {found} on this node"


def _readable(environ: Mapping[str, str]) -> bool:
    return environ.get("NCCL_DEBUG", "").upper() in ("INFO", "TRACE") \
        and bool(environ.get("NCCL_DEBUG_FILE"))


def warnings_since(directory: Path, since: float, hostname: str | None = None) -> list[str]:
    """This host's NCCL WARN lines written since `since` (NCCL's file names start with the
    host name up to its first dot), the last SHOWN_WARNINGS of them."""
    host = (hostname or socket.gethostname()).split(".")[0]
    lines: list[str] = []
    for path in sorted(directory.glob(f"nccl.{host}.*.log")):
        try:
            if path.stat().st_mtime < since:
                continue
            text = path.read_text(errors="replace")
        except OSError:
            continue
        lines += [line.strip() for line in text.splitlines() if " NCCL WARN " in line]
    return lines[-SHOWN_WARNINGS:]


def failure_report(environ: Mapping[str, str], directory: Path, started: float) -> str | None:
    """After a failed run: NCCL's warnings, which went to the log files, not the console."""
    if environ.get(NCCL_LOG_MARKER) != "ft":
        return None
    warned = warnings_since(directory, started)
    where = f"NCCL's log of this node: {directory}/nccl.{_host()}.*.log"
    if not warned:
        return f"ft node: {where} (no NCCL WARN in it)"
    shown = [f"  {re.sub(r'^.*NCCL WARN ', '', line)}" for line in warned]
    return "\n".join([f"ft node: NCCL warnings ({where}):", *shown])


def _host() -> str:
    return socket.gethostname().split(".")[0]


def now() -> float:
    """A start time comparable with file mtimes (a second early: coarse filesystems)."""
    return time.time() - 1.0

