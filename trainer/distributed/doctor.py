"""`ft doctor`, on every rank: the pre-flight's link measurement and verdict without training.

Runs under torchrun like training does, so it exercises the same rendezvous, NCCL (or gloo)
setup and environment. The measuring is trainer/preflight/links_check.py's `measured` and
the verdict trainer/preflight/links_verdict.py's (the pre-flight in the training ranks runs
the same code); this module only starts the world and prints: a table, a JSON line, and a
line per finding. A peer that never shows up ends the check after the timeout instead of hanging it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import torch
import torch.distributed as dist

from trainer.distributed.process_group import init_world
from trainer.distributed.world_ranks import WorldRanks
from trainer.preflight.findings import Finding
from trainer.preflight.links_check import measured
from trainer.preflight.links_measure import LinkMeasurements
from trainer.preflight.links_verdict import judge
from trainer.torch_free.preflight_settings import Preflight


def run(expected_gbs: float | None, size_mb: float | None = None, iters: int = 10,
        timeout_s: float = 180.0, judge_single_host: bool = False) -> int:
    """Measure, print on rank 0, return the exit code (1 if any link is named slow).
    `judge_single_host`: hold emulated nodes to `expected_gbs` too (a pinned expectation)."""
    if "RANK" not in os.environ:  # a launcher that starts one plain process sets no world
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", "29500"))
    world = WorldRanks.from_env(os.environ)
    device = init_world(timeout_s, world)  # the same group setup as training
    try:
        nbytes = int(size_mb * 2**20) if size_mb else None
        fraction = Preflight().link_fraction
        found = measured(device, world.node_rank, fraction, nbytes, iters,
                         assume_fabric=judge_single_host)
        code = [0]
        if world.is_main:
            # As in the pre-flight: the profile's figure is NCCL's over a real fabric.
            real_fabric = device.type == "cuda" and not found.single_host
            findings = judge(found, fraction, expected_gbs,
                             absolute=judge_single_host or real_fabric,
                             expected_by="FT_DOCTOR_EXPECT_GBS" if judge_single_host
                             else "the cluster profile")
            _report(found, findings, expected_gbs, device, world.world_size)
            code = [1 if any(not f.ok for f in findings) else 0]
        # Every rank exits with the verdict: the launcher on each node then agrees on the
        # outcome instead of one node seeing its peer vanish.
        dist.broadcast_object_list(code, src=0)
        return code[0]
    finally:
        dist.destroy_process_group()


def _report(found: LinkMeasurements, findings: list[Finding], expected_gbs: float | None,
            device: torch.device, ranks: int) -> None:
    backend = "nccl " + ".".join(map(str, torch.cuda.nccl.version())) \
        if device.type == "cuda" else "gloo"
    print(f"ft doctor: {ranks} rank(s) on {len(found.hosts)} node(s), {backend}, "
          f"devices: {', '.join(found.devices)}", flush=True)
    for key in ("NCCL_IB_HCA", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_P2P_DISABLE",
                "FI_PROVIDER"):
        if key in os.environ:
            print(f"ft doctor:   {key}={os.environ[key]}", flush=True)
    if not found.results:
        print("ft doctor: one process in all: nothing to all-reduce with", flush=True)
    for m in found.results:
        where = " + ".join(f"node{n} ({h})" for n, h in zip(m.nodes, m.hosts, strict=True))
        print(f"ft doctor: {m.kind:5} {where}: {m.ranks} ranks, {m.bytes / 2**20:g} MiB "
              f"all-reduce, busbw {m.busbw_gbs:.3g} GB/s", flush=True)
    if found.single_host and len(found.hosts) > 1:
        print("ft doctor: every node runs on this host: the nodes are compared with each "
              "other, not with a network fabric's figure", flush=True)
    for f in findings:
        print(f"ft doctor: {'ok  ' if f.ok else 'FAIL'} {f.where()}: {f.detail}", flush=True)
    print("FT_DOCTOR_JSON " + json.dumps({
        "expected_internode_busbw_gbs": expected_gbs, "single_host": found.single_host,
        "seconds": round(found.seconds, 2), "results": [asdict(m) for m in found.results],
        "findings": [f.record() for f in findings]}), flush=True)
