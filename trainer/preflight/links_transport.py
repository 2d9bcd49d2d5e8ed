"""Which transport NCCL chose on each node, against the fabric the job expects.

An RDMA profile (infiniband, roce, aws-efa) whose NCCL fell back to TCP sockets (or to a
libfabric provider that is not EFA) trains many times slower without any error: the
pre-flight fails on it and names every node whose own NCCL log says so. The log is the one
`ft node` sends NCCL's INFO lines to (orchestrator/node/nccl_log_files.py), read by local rank
0 of each node after the links were measured, so every communicator has said its network;
trainer/distributed/nccl_log.py parses it. CPU jobs run gloo: there is no NCCL to judge.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from trainer.distributed.nccl_log import RDMA_FABRICS, log_to_read, parse, summary
from trainer.preflight.findings import Finding
from trainer.torch_free.nccl_env import FABRIC_EXPECTED, FABRIC_EXPECTED_BY

CHECK = "transport"
NOT_RDMA = ("socket", "ofi")  # what a fall-back looks like in Transport.fabric


@dataclass
class NodeTransport:
    """What one node's NCCL log says (local rank 0 reads it)."""

    node: int
    host: str
    fabric: str | None = None  # Transport.fabric: infiniband | roce | efa | socket | ofi | ...
    lines: list[str] = field(default_factory=list)  # nccl_log.summary's lines
    expected: str | None = None  # FT_FABRIC_EXPECTED on that node
    expected_by: str | None = None
    log: str | None = None  # the file read
    not_read: str | None = None  # why there was no log to read


def read_own(environ: Mapping[str, str], node: int, nodes: int, pid: int,
             hostname: str | None = None) -> NodeTransport:
    """This process's NCCL log, as NCCL named it (NCCL_DEBUG_FILE with %h and %p)."""
    host = hostname or socket.gethostname()
    found = NodeTransport(node, host, expected=environ.get(FABRIC_EXPECTED),
                          expected_by=environ.get(FABRIC_EXPECTED_BY))
    path, why_not = log_to_read(environ, host, pid)
    if path is None:
        found.not_read = why_not or "NCCL_DEBUG is not set, so NCCL logs nothing to read"
        return found
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        found.not_read = f"cannot read NCCL's log {path} ({exc.strerror})"
        return found
    transport = parse(text.splitlines())
    found.fabric, found.log = transport.fabric, str(path)
    found.lines = summary(transport, nodes, found.expected, found.expected_by)
    return found


def judge(reports: list[NodeTransport], uses_nccl: bool) -> list[Finding]:
    """One finding per node (NCCL), or one for the job (gloo)."""
    if not uses_nccl:
        return [Finding(CHECK, None, None, True, "gloo (no NCCL): CPU collectives over TCP")]
    return [_verdict(report) for report in sorted(reports, key=lambda r: r.node)]


def _verdict(report: NodeTransport) -> Finding:
    data = {"fabric": report.fabric, "expected": report.expected, "log": report.log}
    if report.not_read:
        return Finding(CHECK, report.node, report.host, True,
                       f"not checked: {report.not_read}", data)
    fell_back = report.expected in RDMA_FABRICS and report.fabric in NOT_RDMA
    said = [line.removeprefix("WARNING: ") for line in report.lines] or \
        ["NCCL transport: one node, nothing between nodes"]
    detail = "; ".join(said)
    if report.log and fell_back:
        detail += f" (NCCL's log: {report.log})"
    return Finding(CHECK, report.node, report.host, not fell_back, detail, data)
