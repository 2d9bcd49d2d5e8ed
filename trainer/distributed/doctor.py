"""`ft doctor`, on every rank: short all-reduces that tell a healthy fabric from a mis-wired one.

Runs under torchrun like training does, so it exercises the same rendezvous, NCCL (or gloo)
setup and environment. Measured, in order, each by its own process group:
  - within each node (all of its GPUs): NVLink/PCIe health;
  - every pair of nodes (all GPUs of both): the inter-node fabric, one link at a time, so a
    single bad node or cable shows up by name; more than 8 nodes: neighbours in a ring;
  - the whole world, when there are more than two nodes.
Bus bandwidth follows nccl-tests: busbw = bytes / time x 2(n-1)/n. Rank 0 prints a table,
a JSON line, and a verdict for the node pairs against the cluster profile's expectation.
A peer that never shows up ends the check after the timeout instead of hanging it.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from trainer.distributed.process_group import init_world
from trainer.distributed.world_ranks import WorldRanks

# Verdict thresholds, as a fraction of the profile's expected inter-node busbw. A fabric
# that fell back to TCP sockets lands far below the lower bound (2x H200, sockets only:
# 3.7 GB/s against 303 GB/s over NVLink; ../shared/bench/ANCHORS.md).
HEALTHY_FRACTION = 0.6
BROKEN_FRACTION = 0.25
ALL_PAIRS_UP_TO = 8


@dataclass
class Measurement:
    kind: str  # node | pair | world
    nodes: list[int]
    hosts: list[str]
    ranks: int
    bytes: int
    busbw_gbs: float
    verdict: str = ""


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


def verdict(busbw_gbs: float, expected_gbs: float | None, single_host: bool) -> str:
    """`single_host`: emulated nodes, whose traffic never leaves the machine, are not judged
    against a network fabric's figure (unless the caller passes False to insist)."""
    if single_host:
        return "single host (emulated nodes: no network fabric measured)"
    if not expected_gbs:
        return "no expectation (the cluster profile sets no expected_internode_busbw_gbs)"
    ratio = busbw_gbs / expected_gbs
    if ratio >= HEALTHY_FRACTION:
        return f"ok ({ratio:.0%} of the expected {expected_gbs:g} GB/s)"
    if ratio >= BROKEN_FRACTION:
        return f"slow ({ratio:.0%} of the expected {expected_gbs:g} GB/s)"
    return (f"FAIL ({ratio:.1%} of the expected {expected_gbs:g} GB/s: likely TCP "
            "fallback or a missing RDMA device; see `ft node`'s fabric lines)")


def run(expected_gbs: float | None, size_mb: float | None = None, iters: int = 10,
        timeout_s: float = 180.0, judge_single_host: bool = False) -> int:
    """Measure, print on rank 0, return the exit code (1 if any node pair FAILs).
    `judge_single_host`: apply the verdict to emulated nodes too (an explicit expectation)."""
    if "RANK" not in os.environ:  # a launcher that starts one plain process sets no world
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", "29500"))
    world = WorldRanks.from_env(os.environ)
    device = init_world(timeout_s, world)  # the same group setup as training
    try:
        return _measure_all(device, world.node_rank, expected_gbs, size_mb, iters,
                            judge_single_host)
    finally:
        dist.destroy_process_group()


def _machine_id() -> str:
    """This machine's boot id: emulated nodes isolated in namespaces of their own have
    hostnames of their own but share it, so their traffic is still not judged as a fabric's."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


def _measure_all(device: torch.device, node: int, expected_gbs: float | None,
                 size_mb: float | None, iters: int, judge_single_host: bool) -> int:
    rank = dist.get_rank()
    peers: list = [None] * dist.get_world_size()
    dist.all_gather_object(peers, (node, socket.gethostname(), _device_name(device),
                                   _machine_id()))
    ranks_by_node: dict[int, list[int]] = {}
    for r, (n, *_) in enumerate(peers):
        ranks_by_node.setdefault(n, []).append(r)
    host_of = {n: peers[rs[0]][1] for n, rs in ranks_by_node.items()}
    machines = {peers[rs[0]][3] for rs in ranks_by_node.values()}
    single_host = len(machines) == 1 and len(ranks_by_node) > 1 and not judge_single_host
    nbytes = int((size_mb or (256 if device.type == "cuda" else 8)) * 2**20)
    mine: list[Measurement] = []
    for kind, nodes in groups_to_measure(ranks_by_node):
        members = sorted(r for n in nodes for r in ranks_by_node[n])
        group = dist.new_group(members)  # every rank creates every group, in one order
        if rank in members:
            busbw = _all_reduce_busbw(group, len(members), nbytes, iters, device)
            if rank == members[0]:
                mine.append(Measurement(kind, nodes, [host_of[n] for n in nodes], len(members),
                                        nbytes, round(busbw, 2)))
        dist.barrier()  # one measurement at a time: they must not share the links
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    code = [0]
    if rank == 0:
        results = [m for part in gathered for m in part]
        for m in results:
            if m.kind == "pair":
                m.verdict = verdict(m.busbw_gbs, expected_gbs, single_host)
        _report(results, peers, expected_gbs, device)
        code = [1 if any(m.verdict.startswith("FAIL") for m in results) else 0]
    # Every rank exits with the verdict: the launcher on each node then agrees on the outcome
    # instead of one node seeing its peer vanish.
    dist.broadcast_object_list(code, src=0)
    return code[0]


def _all_reduce_busbw(group, ranks: int, nbytes: int, iters: int,
                      device: torch.device) -> float:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tensor = torch.ones(nbytes // torch.tensor([], dtype=dtype).element_size(), dtype=dtype,
                        device=device)
    for _ in range(2):  # warm-up: connection setup and NCCL's first-call costs
        dist.all_reduce(tensor, group=group)
    _sync(device)
    dist.barrier(group=group)
    start = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(tensor, group=group)
    _sync(device)
    return bus_bandwidth(nbytes, (time.perf_counter() - start) / iters, ranks)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _report(results: list[Measurement], peers: list, expected_gbs: float | None,
            device: torch.device) -> None:
    nodes = sorted({n for n, *_ in peers})
    backend = "nccl " + ".".join(map(str, torch.cuda.nccl.version())) \
        if device.type == "cuda" else "gloo"
    print(f"ft doctor: {len(peers)} rank(s) on {len(nodes)} node(s), {backend}, "
          f"devices: {', '.join(sorted({d for _, _, d, _ in peers}))}", flush=True)
    for key in ("NCCL_IB_HCA", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_P2P_DISABLE",
                "FI_PROVIDER"):
        if key in os.environ:
            print(f"ft doctor:   {key}={os.environ[key]}", flush=True)
    if not results:
        print("ft doctor: one process in all: nothing to all-reduce with", flush=True)
    for m in results:
        where = " + ".join(f"node{n} ({h})" for n, h in zip(m.nodes, m.hosts, strict=True))
        line = f"ft doctor: {m.kind:5} {where}: {m.ranks} ranks, " \
               f"{m.bytes / 2**20:g} MiB all-reduce, busbw {m.busbw_gbs:.2f} GB/s"
        print(line + (f"  -> {m.verdict}" if m.verdict else ""), flush=True)
    print("FT_DOCTOR_JSON " + json.dumps({"expected_internode_busbw_gbs": expected_gbs,
                                         "results": [asdict(m) for m in results]}), flush=True)
