"""All-reduce bus bandwidth within each node, per node pair and over the world: the one
measuring code behind the pre-flight's link check and `ft doctor`.

Every rank calls `measure` at the same point (the world is up). Each measurement has a process
group of its own, made by every rank in one order, used by its members, then destroyed (an NCCL
communicator holds GPU buffers: 37 of them at 8 nodes must not stay until the model loads),
with a barrier between them so two measurements never share a link:
  - within each node (all of its ranks), when it has more than one: NVLink/PCIe health;
  - every pair of nodes (all ranks of both): the fabric one link at a time, so a bad NIC or
    cable has a name; beyond ALL_PAIRS_UP_TO nodes, neighbours in a ring (n pairs, not n^2/2);
  - the whole world, when there are more than two nodes.
Bus bandwidth follows nccl-tests: busbw = bytes / time x 2(n-1)/n, from the FASTEST of several
single timed all-reduces: a rank descheduled on a busy host slows some of them and never
speeds one up, while a bad link is slow in every one (links_check.py also measures a
suspect again before naming it).

Bounded: a small probe all-reduce (PROBE_BYTES) sizes each measurement so that one
all-reduce takes about a fifth of BUDGET_S, up to MAX_BYTES; then 2 untimed and 3 to ITERS
timed ones, no more than fit in BUDGET_S after the first. At 8 nodes x 8 GPUs that is
8 + 28 + 1 = 37 groups; each costs its communicator (NCCL splits it off the world's: ~0.2-1 s)
plus the all-reduces: a pair of nodes (16 ranks) at 150 GB/s busbw moves 256 MiB in ~3.4 ms,
~40 ms for all 12, so ~20-40 s for the whole check. A link at 1 GbE or 100 Mbit/s gets
16 MiB or 2 MiB all-reduces of ~0.15 s each: ~1-1.5 s per group whatever the link, so
under a minute and a half even if every pair were that slow.
On CPU (gloo, the emulated nodes of the tests) 1 MiB and a 0.25 s budget: under a second
for 3 healthy nodes, ~2-3 s when one node's link runs at 100 Mbit/s.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

ALL_PAIRS_UP_TO = 8
# The largest all-reduce: where NCCL reaches its bus bandwidth plateau on IB/NVLink. On CPU
# (gloo) 1 MiB: past the latency-bound sizes, and short enough that on a busy host some of
# them run without the rank being descheduled (4 MiB ones, or sizes that vary from pair to
# pair, spread healthy pairs' figures over 4x on two loaded cores: 1 MiB ones stay in 2x).
MAX_BYTES = {"cuda": 256 * 2**20, "cpu": 2**20}
# The first, small all-reduce: it sizes the others, so a link at 100 Mbit/s is measured with
# a few MiB in about a second instead of 256 MiB in minutes (CPU: one size for all).
PROBE_BYTES = {"cuda": 2**20, "cpu": 2**20}
WARMUP = 2  # at the measured size: NCCL's first-call costs, never timed
MIN_TIMED = 3
BUDGET_S = {"cuda": 1.0, "cpu": 0.25}  # per measurement, past the probe
# Timed all-reduces per measurement at most: a CPU rank on a busy host is descheduled often,
# and the fastest of 20 one-millisecond all-reduces still costs only ~20 ms.
ITERS = {"cuda": 10, "cpu": 20}


@dataclass
class Measurement:
    kind: str  # node | pair | world
    nodes: list[int]
    hosts: list[str]
    ranks: int
    bytes: int
    busbw_gbs: float
    timed: int = 0  # how many all-reduces the fastest is of
    rounds: int = 1  # 2: measured again as a suspect, the better figure kept


@dataclass
class LinkMeasurements:
    """What every rank knows after `measure`: who is where, and the bandwidths."""

    hosts: dict[int, str]  # node rank -> host name
    ranks_by_node: dict[int, list[int]]
    devices: list[str]  # device names, one per distinct kind
    single_host: bool  # every node on one machine (emulated): no network fabric measured
    results: list[Measurement] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, kind: str) -> list[Measurement]:
        return [m for m in self.results if m.kind == kind]


def groups_to_measure(ranks_by_node: dict[int, list[int]]) -> list[tuple[str, list[int]]]:
    """(kind, nodes) in the order every rank creates the process groups."""
    nodes = sorted(ranks_by_node)
    plan = [("node", [n]) for n in nodes if len(ranks_by_node[n]) > 1]
    if len(nodes) <= ALL_PAIRS_UP_TO:
        pairs = list(itertools.combinations(nodes, 2))
    else:
        pairs = [tuple(sorted((a, b))) for a, b in zip(nodes, nodes[1:] + nodes[:1], strict=True)]
    plan += [("pair", list(pair)) for pair in pairs]
    if len(nodes) > 2:
        plan.append(("world", nodes))
    return plan


def bus_bandwidth(nbytes: int, seconds_per_op: float, ranks: int) -> float:
    """All-reduce bus bandwidth in GB/s (nccl-tests convention)."""
    if ranks < 2 or seconds_per_op <= 0:
        return 0.0
    return nbytes / seconds_per_op * 2 * (ranks - 1) / ranks / 1e9


def measure(device: torch.device, node_rank: int, nbytes: int | None = None,
            iters: int | None = None, assume_fabric: bool = False) -> LinkMeasurements:
    """Every rank calls it; every rank gets the whole result. `assume_fabric`: judge nodes on
    one machine as if a fabric joined them (an explicit expectation pinned by the user)."""
    started = time.perf_counter()
    peers: list = [None] * dist.get_world_size()
    dist.all_gather_object(peers, (node_rank, socket.gethostname(), _device_name(device),
                                   _machine_id()))
    ranks_by_node: dict[int, list[int]] = {}
    for r, (n, *_) in enumerate(peers):
        ranks_by_node.setdefault(n, []).append(r)
    machines = {peers[rs[0]][3] for rs in ranks_by_node.values()}
    found = LinkMeasurements({n: peers[rs[0]][1] for n, rs in ranks_by_node.items()},
                             ranks_by_node, sorted({p[2] for p in peers}),
                             len(machines) == 1 and len(ranks_by_node) > 1 and not assume_fabric)
    found.results = measure_groups(found, groups_to_measure(ranks_by_node), device, nbytes, iters)
    found.seconds = time.perf_counter() - started
    return found


def measure_groups(found: LinkMeasurements, plan: list[tuple[str, list[int]]],
                   device: torch.device, nbytes: int | None = None,
                   iters: int | None = None) -> list[Measurement]:
    """The measurements of `plan` (every rank passes the same), on every rank. `nbytes`: the
    largest all-reduce (default MAX_BYTES)."""
    rank = dist.get_rank()
    nbytes = nbytes or MAX_BYTES[_kind(device)]
    iters = iters or ITERS[_kind(device)]
    mine: list[Measurement] = []
    for kind, nodes in plan:
        members = sorted(r for n in nodes for r in found.ranks_by_node[n])
        group = dist.new_group(members)  # every rank creates every group, in one order
        if rank in members:
            size, seconds, timed = _fastest_all_reduce_s(group, nbytes, iters, device)
            if rank == members[0]:
                busbw = bus_bandwidth(size, seconds, len(members))
                mine.append(Measurement(kind, nodes, [found.hosts[n] for n in nodes],
                                        len(members), size, busbw, timed))
            dist.destroy_process_group(group)
        dist.barrier()  # one measurement at a time: they must not share the links
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return [m for part in gathered for m in part]


def _fastest_all_reduce_s(group, max_bytes: int, iters: int,
                          device: torch.device) -> tuple[int, float, int]:
    """(bytes, seconds of the fastest all-reduce of them, how many were timed). Every member
    runs the same all-reduces: sizes and counts come from the slowest member's timings."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tensor = torch.zeros(max_bytes // dtype.itemsize, dtype=dtype, device=device)  # sums stay 0
    budget = BUDGET_S[_kind(device)]
    probe_bytes = min(PROBE_BYTES[_kind(device)], max_bytes)
    probe = tensor[:probe_bytes // dtype.itemsize]
    dist.all_reduce(probe, group=group)  # connection setup
    probe_s = _slowest(min(_timed(probe, group, device) for _ in range(2)), group, device)
    nbytes = sized(probe_bytes, probe_s, budget / (WARMUP + MIN_TIMED), max_bytes)
    work = tensor[:nbytes // dtype.itemsize]
    for _ in range(WARMUP):
        dist.all_reduce(work, group=group)
    _sync(device)
    times = [_timed(work, group, device)]
    count = max(MIN_TIMED, min(iters, int(budget / max(_slowest(times[0], group, device),
                                                       1e-9))))
    times += [_timed(work, group, device) for _ in range(count - 1)]
    return nbytes, min(times), len(times)


def sized(probe_bytes: int, probe_s: float, op_s: float, max_bytes: int) -> int:
    """The power of two of bytes (probe_bytes..max_bytes) that one all-reduce moves in about
    `op_s` at the probe's speed."""
    wanted = probe_bytes * op_s / max(probe_s, 1e-9)
    nbytes = probe_bytes
    while nbytes * 2 <= min(wanted, max_bytes):
        nbytes *= 2
    return nbytes


def _slowest(seconds: float, group, device: torch.device) -> float:
    """The largest of the members' figures: what they all then agree on."""
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return value.item()


def _timed(tensor: torch.Tensor, group, device: torch.device) -> float:
    start = time.perf_counter()
    dist.all_reduce(tensor, group=group)
    _sync(device)
    return time.perf_counter() - start


def _kind(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _machine_id() -> str:
    """This machine's boot id: emulated nodes isolated in namespaces of their own have
    hostnames of their own but share it, so their traffic is not judged as a fabric's."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()
