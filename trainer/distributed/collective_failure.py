"""A collective that failed on this rank (gloo: "Connection reset by peer", "Connection
closed by peer"; NCCL: a DistBackendError) ends the job with PEER_LOST_EXIT_CODE and names
the node at the other end.

Before this, the rank printed the backend's traceback and exited 1: `ft node` said "exit 1",
torchrun's ChildFailedError followed, and the only hint of which node was gloo's bare
address in the middle of the traceback ("Read error [10.210.0.2]:9378"). The address is
the one each rank's heartbeat already published (Member.address), so the node is named by
rank, hostname and address; where the error names no known address (NCCL often does not,
or every node shares one loopback address) the finding says so and the heartbeats may name
a silent node on the other ranks.

The peer at the other end is not recorded as a bad node for a requeue to exclude: a reset
connection is as often this node's fault (its link) or a crash of the peer's own code.
"""

from __future__ import annotations

import re
import traceback

import torch.distributed as dist

from trainer.distributed.peer_watch import Member, PeerWatch

# What the backends raise a collective's failure as: a DistError (torch >= 2.1: backend,
# network and store errors), or gloo's and NCCL's own text in a plain RuntimeError.
_BACKEND_TEXT = re.compile(r"gloo|NCCL|ProcessGroup|Connection (reset|closed) by peer")


def collective_failure(exc: BaseException) -> BaseException | None:
    """The exception in exc's chain that is a collective's failure, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, dist.DistError) or (
                isinstance(current, RuntimeError) and _BACKEND_TEXT.search(str(current))):
            return current
        current = current.__cause__ or current.__context__
    return None


def peers_named(text: str, members: dict[int, Member], me: Member) -> list[Member]:
    """One member per node whose address (not this node's) the error text names."""
    named: dict[int, Member] = {}
    for member in members.values():
        if member.node_rank == me.node_rank or member.address in ("?", me.address):
            continue
        if re.search(rf"(?<![\d.]){re.escape(member.address)}(?![\d])", text):
            named.setdefault(member.node_rank, member)
    return [named[node] for node in sorted(named)]


def end_if_collective_failed(watch: PeerWatch | None, exc: BaseException) -> None:
    """Under torchrun with heartbeats: a collective's failure ends this rank with
    PEER_LOST_EXIT_CODE, the peer named; anything else returns (and is raised as before)."""
    failed = collective_failure(exc)
    if watch is None or failed is None:
        return
    traceback.print_exception(exc)  # the backend's own words stay in the log
    first = next((line.strip() for line in str(failed).splitlines() if line.strip()), "")
    first = re.sub(r"^\[[^\]]*third_party/[^\]]*\]\s*", "", first)  # gloo's source path
    peers = peers_named(str(failed), watch.members, watch.me)
    who = ("the peer at the other end: " + "; ".join(m.node() for m in peers)
           if peers else "the error names no node (the heartbeats name a silent one)")
    watch.end(f"a collective failed on rank {watch.me.rank} of {watch.me.node()} "
              f"({type(failed).__name__}: {first[:300]}); {who}: ending the job",
              publish=True)
