"""The Slurm master's network address, from the job's node list.

`scontrol show hostnames` gives Slurm node *names*, which need not resolve: the two-node test
cluster calls its nodes n1 and n2, and many sites name nodes apart from their DNS names. The
address slurmd itself is reached at is the node's `NodeAddr`, so that comes first; DNS is the
fallback for clusters where NodeAddr is just the name again.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

from orchestrator.errors import UserError
from orchestrator.process import Completed, run_cmd

_NODE_ADDR = re.compile(r"(?:^|\s)NodeAddr=(\S+)")
_NO_SCONTROL = ("scontrol is not on PATH: `ft node --backend slurm` needs the Slurm client "
                "tools on the node (in a pyxis/enroot container, mount them in or run `ft node` "
                "outside the container)")


def resolve_master_address(
    nodelist: str, resolve_host: Callable[[str], str] = socket.gethostbyname
) -> tuple[str, str]:
    """(address, note): the first node of `nodelist` and how its address was found."""
    name = first_hostname(nodelist)
    node_addr, why_not = _node_addr(name)
    if node_addr and node_addr != name:
        return node_addr, f"master {name} -> {node_addr} (NodeAddr from scontrol show node)"
    try:
        address = resolve_host(name)
    except OSError as exc:
        raise UserError(
            f"ft node --backend slurm: the master node {name!r} (first of SLURM_JOB_NODELIST="
            f"{nodelist}) cannot be reached by name: {why_not}, and the name does not "
            f"resolve here ({exc}). Give the node a NodeAddr= in slurm.conf, or add it to DNS "
            f"or /etc/hosts on every node.") from None
    if ipaddress.ip_address(address).is_loopback:
        # Debian-style /etc/hosts maps a host's own name to 127.0.1.1: true only on the
        # master itself. Pass the name so every node resolves it for itself.
        return name, (f"master {name} (resolves to loopback {address} here, so the name is "
                      f"passed on; {why_not})")
    return address, f"master {name} -> {address} (DNS lookup; {why_not})"


def first_hostname(nodelist: str) -> str:
    """The first name of a Slurm hostlist expression such as `gpu-[01-04],n1`."""
    result = _scontrol("show", "hostnames", nodelist)
    names = result.stdout.split()
    if result.returncode != 0 or not names:
        raise UserError(f"ft node --backend slurm: `scontrol show hostnames {nodelist}` "
                        f"failed: {result.stderr.strip() or 'no host names printed'}")
    return names[0]


def _node_addr(name: str) -> tuple[str | None, str]:
    """(NodeAddr or None, why it is not usable) from `scontrol show node <name>`."""
    result = _scontrol("show", "node", name)
    if result.returncode != 0:
        return None, f"`scontrol show node {name}` failed ({result.stderr.strip()})"
    match = _NODE_ADDR.search(result.stdout)
    if match is None:
        return None, f"`scontrol show node {name}` shows no NodeAddr"
    return match.group(1), f"its NodeAddr is the name {name!r} itself"


def _scontrol(*args: str) -> Completed:
    try:
        return run_cmd(["scontrol", *args])
    except FileNotFoundError:
        raise UserError(_NO_SCONTROL) from None
