"""A private network for the emulated nodes of one `ft launch`: one network namespace per
node with an `eth0` on 10.210.0.0/24, all plugged into a bridge that lives in a namespace of
its own (the "switch"). Nothing is created in this host's namespace, so the nodes reach each
other and nothing else, and concurrent launches may use the same addresses.

For tests of a slow link: FT_LOCAL_LINK_QDISC="<node rank>=<tc qdisc>[;...]" (e.g.
"2=tbf rate 100mbit burst 64kb latency 50ms") puts that queueing discipline on the node's link
in both directions (its eth0 and its switch port) before any node starts: what a bad NIC or
cable does to one node.

Every namespace is named `ftlocal-<launcher pid>-<random>-...`: deleting the namespaces
deletes the veth pairs and the bridge with them, and a launch whose launcher was SIGKILLed
(no `finally` ran) is swept by the next launch, which sees that pid gone.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass

from orchestrator.process import pid_exists, run_cmd
from trainer.torch_free.errors import UserError

PREFIX = "ftlocal"
SUBNET = "10.210.0"
NODE_IFNAME = "eth0"  # what a cluster node's interface is called; fabric detection skips veth*
UP_TIMEOUT_S = 10
QDISC_ENV = "FT_LOCAL_LINK_QDISC"
_OWN_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+-")


@dataclass(frozen=True)
class NodeNetwork:
    """The namespaces of one launch: `nodes[r]` is node r's, `addresses[r]` its IP."""

    switch: str
    nodes: tuple[str, ...]
    addresses: tuple[str, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (*self.nodes, self.switch)


def create_network(count: int) -> NodeNetwork:
    """Build the namespaces, veth pairs and bridge for `count` nodes; on any failure remove
    what was made and raise a UserError saying what failed."""
    assert 1 <= count <= 250, "one /24 holds the nodes"
    stem = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
    net = NodeNetwork(f"{stem}-sw", tuple(f"{stem}-n{r}" for r in range(count)),
                      tuple(f"{SUBNET}.{r + 1}" for r in range(count)))
    try:
        _ip(None, [f"netns add {name}" for name in net.namespaces])
        # Each veth is created with its ends already in place: port p<r> on the switch,
        # eth0 in node r. No interface ever appears in this host's namespace.
        _ip(None, [f"link add p{r} netns {net.switch} type veth peer name {NODE_IFNAME} "
                   f"netns {node}" for r, node in enumerate(net.nodes)])
        _ip(net.switch, ["link add br0 type bridge", "link set br0 up",
                         *(f"link set p{r} master br0 up" for r in range(count))])
        for node, address in zip(net.nodes, net.addresses, strict=True):
            _ip(node, [f"addr add {address}/24 dev {NODE_IFNAME}",
                       f"link set {NODE_IFNAME} up", "link set lo up"])
        _wait_until_up(net)
        shape_links(net, os.environ.get(QDISC_ENV, ""))
    except BaseException:
        remove_network(net)
        raise
    return net


def shape_links(net: NodeNetwork, wanted: str) -> None:
    """FT_LOCAL_LINK_QDISC's shaping: `<node rank>=<tc qdisc>`, `;` between nodes."""
    for item in filter(None, (part.strip() for part in wanted.split(";"))):
        rank, _, qdisc = item.partition("=")
        if not (rank.strip().isdigit() and int(rank) < len(net.nodes) and qdisc.strip()):
            raise UserError(f"{QDISC_ENV}={wanted!r}: write `<node rank>=<tc qdisc>` (e.g. "
                            "`1=tbf rate 100mbit burst 64kb latency 50ms`), node ranks 0.."
                            f"{len(net.nodes) - 1}")
        r = int(rank)
        for namespace, device in ((net.nodes[r], NODE_IFNAME), (net.switch, f"p{r}")):
            argv = ["tc", "-n", namespace, "qdisc", "add", "dev", device, "root",
                    *qdisc.split()]
            result = run_cmd(argv)
            if result.returncode != 0:
                raise UserError(f"{QDISC_ENV}: `{' '.join(argv)}` failed: "
                                f"{' '.join(result.stderr.split())}")


def remove_network(net: NodeNetwork) -> None:
    """Delete the launch's namespaces (their veths and bridge go with them); what is
    already gone is skipped."""
    existing = set(list_namespaces())
    gone = [f"netns del {name}" for name in net.namespaces if name in existing]
    if gone:
        run_cmd(["ip", "-force", "-batch", "-"], input_text="\n".join(gone) + "\n")


def sweep_stale() -> list[str]:
    """Remove the namespaces of earlier launches whose launcher no longer runs (killed
    with SIGKILL, so its own cleanup never ran); returns their names."""
    stale = [name for name in list_namespaces()
             if (match := _OWN_NAME.match(name)) and not pid_exists(int(match.group(1)))]
    if stale:
        run_cmd(["ip", "-force", "-batch", "-"],
                input_text="".join(f"netns del {name}\n" for name in stale))
    return stale


def list_namespaces() -> list[str]:
    result = run_cmd(["ip", "netns", "list"])
    # Lines read `name` or `name (id: 3)`.
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _ip(namespace: str | None, commands: list[str]) -> None:
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    result = run_cmd(argv, input_text="\n".join(commands) + "\n")
    if result.returncode != 0:
        said = " ".join(result.stderr.split()) or "failed"  # one line: it may be the reason
        raise UserError(f"ft launch: could not build the emulated nodes' network "
                        f"(`{' '.join(argv)}`: {said}); run with --no-isolate to share this "
                        "host's network instead")


def _wait_until_up(net: NodeNetwork) -> None:
    """A veth reports `state UP` a moment after both ends are up; fabric detection on the
    node reads that state, so the nodes start only once every link is up."""
    deadline = time.monotonic() + UP_TIMEOUT_S
    for node in net.nodes:
        while "state UP" not in run_cmd(["ip", "-n", node, "link", "show", NODE_IFNAME]).stdout:
            if time.monotonic() > deadline:
                raise UserError(f"ft launch: {NODE_IFNAME} in {node} did not come up within "
                                f"{UP_TIMEOUT_S} s")
            time.sleep(0.05)
