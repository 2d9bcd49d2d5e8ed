"""Which transport NCCL chose, read from NCCL's own INFO log, in one line per node.

A fabric that is configured but not used (no RDMA devices in the container, a missing
aws-ofi-nccl plugin, NCCL_IB_DISABLE left on) does not fail: NCCL falls back to TCP sockets
and the job trains 10-50x slower. NCCL says what it picked only at INFO level, which floods
a console, so `ft node` (orchestrator/node/nccl_log_files.py) points NCCL_DEBUG=INFO at one file
per process (NCCL_DEBUG_FILE with NCCL's %h host and %p pid) when the user set no
NCCL_DEBUG, and after the first collective local rank 0 of each node reads its own file.

The lines read (formats seen in NCCL 2.4-2.28 and aws-ofi-nccl logs; tests/fixtures/nccl):
  NCCL INFO Using network IB | IBext | Socket | AWS Libfabric     the network NCCL chose
  NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/RoCE ...  its devices and link layer
  NCCL INFO NET/Socket : Using [0]eth0:10.0.0.1<0>               its interfaces
  NCCL INFO NET/OFI Selected Provider is efa                      the libfabric provider
  NCCL INFO Channel 00/0 : 1[1] -> 8[0] [send] via NET/IB/0/GDRDMA   what a connection uses
  NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read        (within a node)
This module is torch-free: it is tested on real log excerpts without GPUs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from trainer.torch_free.nccl_env import FABRIC_EXPECTED, FABRIC_EXPECTED_BY

RDMA_FABRICS = ("infiniband", "roce", "efa")
SHOWN_DEVICES = 4

_NETWORK = re.compile(r"NCCL INFO Using network (.+?)\s*$")
_IB_DEVICES = re.compile(r"NCCL INFO NET/IB : Using (.*)$")
_IB_DEVICE = re.compile(r"\[\d+\]([^\s:/\[]+:\d+)/(IB|RoCE)")
_SOCKETS = re.compile(r"NCCL INFO NET/Socket : Using (.*)$")
_SOCKET = re.compile(r"\[\d+\]([^\s:<\[]+):")
_PROVIDER = re.compile(r"NET/OFI Selected [Pp]rovider is ([\w-]+)")
_OFI_VERSION = re.compile(r"NET/OFI (?:Using|Initializing) aws-ofi-nccl (\S+)")
_NET_CHANNEL = re.compile(r"NCCL INFO (?:Channel|Ring) .* via (NET/[^/]+)/\d+((?:/\w+)*)")
_LOCAL_CHANNEL = re.compile(r"NCCL INFO (?:Channel|Ring) .* via ((?:P2P|SHM)/[^/\n]+)")
_WARN = re.compile(r"NCCL WARN (.*)$")


@dataclass
class Transport:
    """What one process's NCCL log says about its transports."""

    network: str | None = None  # "IB", "IBext", "Socket", "AWS Libfabric", ...
    hcas: list[str] = field(default_factory=list)  # mlx5_0:1 (NET/IB)
    sockets: list[str] = field(default_factory=list)  # eth0 (NET/Socket)
    link_layers: set[str] = field(default_factory=set)  # IB, RoCE
    provider: str | None = None  # libfabric provider: efa
    plugin: str | None = None  # aws-ofi-nccl version
    net_channels: list[str] = field(default_factory=list)  # NET/IB, NET/AWS Libfabric
    gdr: bool | None = None  # GPUDirect RDMA on the NET channels seen
    local_channels: list[str] = field(default_factory=list)  # P2P/CUMEM, SHM/direct
    warnings: list[str] = field(default_factory=list)

    @property
    def fabric(self) -> str | None:
        """infiniband | roce | efa | socket | ofi | another plugin's name | None (no log).
        Without a `Using network` line, the network its connections name (NET/IB/0 -> IB)."""
        network = self.network or (self.net_channels[0][4:] if self.net_channels else "")
        if network == "Socket":
            return "socket"
        if "Libfabric" in network or self.provider:
            return "efa" if self.provider in (None, "efa") else "ofi"
        if network.startswith("IB"):
            return "roce" if self.link_layers == {"RoCE"} else "infiniband"
        return network or None


def parse(lines: Iterable[str]) -> Transport:
    found = Transport()
    for line in lines:
        line = line.rstrip("\n")
        for pattern, apply in _RULES:
            match = pattern.search(line)
            if match:
                apply(found, match)
    return found


def _network(t: Transport, m: re.Match) -> None:
    t.network = m.group(1)


def _ib_devices(t: Transport, m: re.Match) -> None:
    for device, layer in _IB_DEVICE.findall(m.group(1)):
        _add(t.hcas, device)
        t.link_layers.add(layer)


def _sockets(t: Transport, m: re.Match) -> None:
    for name in _SOCKET.findall(m.group(1)):
        _add(t.sockets, name)


def _provider(t: Transport, m: re.Match) -> None:
    t.provider = m.group(1)


def _ofi_version(t: Transport, m: re.Match) -> None:
    t.plugin = m.group(1)


def _net_channel(t: Transport, m: re.Match) -> None:
    _add(t.net_channels, m.group(1))
    gdr = "/GDRDMA" in m.group(2)
    t.gdr = gdr if t.gdr is None else (t.gdr and gdr)


def _local_channel(t: Transport, m: re.Match) -> None:
    _add(t.local_channels, m.group(1).strip())


def _warn(t: Transport, m: re.Match) -> None:
    t.warnings.append(m.group(1).strip())


_RULES = ((_NETWORK, _network), (_IB_DEVICES, _ib_devices), (_SOCKETS, _sockets),
          (_PROVIDER, _provider), (_OFI_VERSION, _ofi_version), (_NET_CHANNEL, _net_channel),
          (_LOCAL_CHANNEL, _local_channel), (_WARN, _warn))


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def summary(t: Transport, nodes: int, expected: str | None = None,
            expected_by: str | None = None) -> list[str]:
    """The lines to print: the transport between nodes (or within the node, for one node or
    nodes that share a host), and a WARNING when it contradicts what was expected."""
    within = f"within the node: {', '.join(t.local_channels)}" if t.local_channels else None
    if nodes < 2:
        return [f"NCCL transport {within}"] if within else []
    if expected == "single-host":  # emulated nodes: their traffic never leaves this machine
        used = _described(t) if t.net_channels else ", ".join(t.local_channels)
        return [f"NCCL transport between nodes: {used or 'not in NCCL log'} (every node runs "
                "on this host: no network fabric is involved)"]
    if t.fabric is None:
        return ["NCCL transport between nodes: not in NCCL's log (no `Using network` line)"]
    line = f"NCCL transport between nodes: {_described(t)}" + (f"; {within}" if within else "")
    contradiction = _contradiction(t, expected, expected_by)
    return [line] + ([contradiction] if contradiction else [])


def _described(t: Transport) -> str:
    fabric = t.fabric
    if fabric == "socket":
        return f"NET/Socket ({_shown(t.sockets) or 'interface not logged'}) - TCP, no RDMA"
    if fabric in ("efa", "ofi"):
        parts = [f"aws-ofi-nccl {t.plugin}" if t.plugin else "aws-ofi-nccl",
                 *([f"provider {t.provider}"] if t.provider else [])]
    else:
        parts = [_shown(t.hcas)]
        if fabric == "roce":
            parts.append("RoCE")
    if t.gdr is not None:
        parts.append(f"GDR {'on' if t.gdr else 'off'}")
    label = "NET/OFI" if fabric in ("efa", "ofi") else (
        t.net_channels[0] if t.net_channels else f"NET/{t.network}")  # network is set here
    return f"{label} ({', '.join(p for p in parts if p)})" if any(parts) else label


def _shown(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_DEVICES])
    more = len(names) - SHOWN_DEVICES
    return shown + (f" +{more} more" if more > 0 else "")


def _contradiction(t: Transport, expected: str | None, expected_by: str | None) -> str | None:
    if expected not in RDMA_FABRICS or t.fabric == expected \
            or t.fabric not in ("socket", "ofi", *RDMA_FABRICS):
        return None
    who = expected_by or "the cluster profile"
    needs = ("libfabric and the aws-ofi-nccl plugin" if expected == "efa" else
             "libibverbs (rdma-core)")
    if t.fabric == "socket":
        return (f"WARNING: NCCL fell back to TCP sockets between nodes, but {who} expects "
                f"{expected}: training will be many times slower. Check that the RDMA "
                f"devices are in the container (ls /sys/class/infiniband), that the image has "
                f"{needs}, and NCCL's log for why.")
    if t.fabric == "ofi":  # aws-ofi-nccl over libfabric's tcp or sockets provider
        return (f"WARNING: NCCL's libfabric plugin runs on the {t.provider} provider, not "
                f"EFA, but {who} expects {expected}: training will be many times slower. "
                "Check that the EFA devices are in the container (ls /sys/class/infiniband) "
                "and FI_PROVIDER=efa.")
    return f"note: NCCL uses {t.fabric} between nodes; {who} expects {expected}"


# --- Where the log is ----------------------------------------------------------------------

def expand_debug_file(pattern: str, hostname: str, pid: int) -> str:
    """NCCL_DEBUG_FILE as NCCL expands it (src/debug.cc): %h the host name up to its first
    dot with '%' and '/' made '-', %p the pid, %% a '%', anything else kept."""
    host = hostname.split(".")[0].replace("%", "-").replace("/", "-")
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char != "%" or i + 1 >= len(pattern):
            out.append(char)
            i += 1
            continue
        code = pattern[i + 1]
        out.append({"%": "%", "h": host, "p": str(pid)}.get(code, "%" + code))
        i += 2
    return "".join(out)


def log_to_read(environ: Mapping[str, str], hostname: str, pid: int) -> tuple[Path | None, str]:
    """(this process's NCCL log file, why not when None). Read only at INFO/TRACE level
    into a file: a console log is the user's to read."""
    level = environ.get("NCCL_DEBUG", "").upper()
    pattern = environ.get("NCCL_DEBUG_FILE")
    if level in ("INFO", "TRACE") and pattern:
        return Path(expand_debug_file(pattern, hostname, pid)), ""
    if not level:
        return None, ""  # NCCL logs nothing; no one asked ft to look (ft node always sets it)
    return None, (f"NCCL_DEBUG={environ['NCCL_DEBUG']} is set (not by ft), so NCCL logs where "
                  "you asked and ft does not read it; unset NCCL_DEBUG to get this line, or "
                  "set NCCL_DEBUG=INFO with NCCL_DEBUG_FILE")


def transport_report(environ: Mapping[str, str], hostname: str, pid: int, nodes: int,
                     local_rank: int, rank: int) -> list[str]:
    """The lines this process prints after the first collective: local rank 0 of each node
    reads its own log; when there is none to read, global rank 0 alone says why."""
    path, why_not = log_to_read(environ, hostname, pid)
    if path is None:
        return [why_not] if why_not and rank == 0 else []
    if local_rank != 0:
        return []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return [f"NCCL transport not reported: cannot read NCCL's log {path} ({exc.strerror})"]
    lines = summary(parse(text.splitlines()), nodes, environ.get(FABRIC_EXPECTED),
                    environ.get(FABRIC_EXPECTED_BY))
    return lines + ([f"(NCCL's log of this rank: {path})"] if lines else [])
