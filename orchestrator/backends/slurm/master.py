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

from orchestrator.process import Completed, run_cmd
from trainer.torch_free.errors import UserError

_NODE_ADDR = re.compile(r"(?:^|\s)NodeAddr=(\S+)")
_NO_SCONTROL = ("ft node --backend slurm: {why}, and SLURM_JOB_NODELIST={nodelist} is more "
                "than a simple hostlist; ft node needs working Slurm client tools on the node "
                "(in a pyxis/enroot container, mount them in or run `ft node` outside it)")
_RANGE = re.compile(r"^(?P<prefix>[^\[\],]*)\[(?P<first>\d+)(?:-\d+)?[^\]]*\](?P<rest>.*)$")


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
    if result is not None and result.returncode == 0 and result.stdout.split():
        return result.stdout.split()[0]
    # No scontrol (a container without the Slurm tools), or one without a configuration
    # (`ft launch --backend local`): a simple list can still be read off the expression.
    why = "scontrol is not on PATH" if result is None else (
        f"`scontrol show hostnames {nodelist}` failed: "
        f"{result.stderr.strip() or 'no host names printed'}")
    return _first_host_without_scontrol(nodelist, why)


def _first_host_without_scontrol(nodelist: str, why: str) -> str:
    """Inside a container without the Slurm tools (or `ft launch --backend local`), the
    first host of a simple list (`a,b` or `n[1-4]`) can be read off the expression."""
    first = _first_entry(nodelist.strip())
    match = _RANGE.match(first)
    if match:
        if "[" in match.group("rest"):
            raise UserError(_NO_SCONTROL.format(nodelist=nodelist, why=why))
        return f"{match.group('prefix')}{match.group('first')}{match.group('rest')}"
    if not first or "[" in first or "]" in first:
        raise UserError(_NO_SCONTROL.format(nodelist=nodelist, why=why))
    return first


def _first_entry(nodelist: str) -> str:
    """`gpu-[01-03],n1` -> `gpu-[01-03]`: up to the first comma outside brackets."""
    depth = 0
    for index, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            return nodelist[:index]
    return nodelist


def _node_addr(name: str) -> tuple[str | None, str]:
    """(NodeAddr or None, why it is not usable) from `scontrol show node <name>`."""
    result = _scontrol("show", "node", name)
    if result is None:
        return None, "scontrol is not on PATH, so there is no NodeAddr to read"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"`scontrol show node {name}` failed ({last})"
    match = _NODE_ADDR.search(result.stdout)
    if match is None:
        return None, f"`scontrol show node {name}` shows no NodeAddr"
    return match.group(1), f"its NodeAddr is the name {name!r} itself"


def _scontrol(*args: str) -> Completed | None:
    """scontrol's result, or None where it is not installed."""
    try:
        return run_cmd(["scontrol", *args])
    except FileNotFoundError:
        return None
