"""The pre-flight's collectives check: all-reduce bus bandwidth within each node, per node
pair and over the world (trainer/preflight/links_measure.py), judged on rank 0
(links_verdict.py: the slow node or pair is named), and the transport NCCL chose on each node
against the fabric the cluster profile expects (links_transport.py).

Emulated nodes on one host are judged against each other only: their traffic never leaves
the machine, so a network fabric's figure means nothing there. On real nodes with NCCL, each
pair is also held to the profile's expected_internode_busbw_gbs (ft node passes it in
FT_FABRIC_EXPECTED_BUSBW_GBS). FT_DOCTOR_EXPECT_GBS (e.g. in `launch.env`) pins an
expectation that applies to any run, emulated or CPU included.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from trainer.preflight import links_transport, links_verdict
from trainer.preflight.findings import Finding
from trainer.preflight.links_measure import LinkMeasurements, measure, measure_groups
from trainer.torch_free.errors import UserError
from trainer.torch_free.nccl_env import FABRIC_EXPECTED_BUSBW

if TYPE_CHECKING:  # the runner imports this module to register the check
    from trainer.preflight.runner import Context

PINNED_EXPECTATION_ENV = "FT_DOCTOR_EXPECT_GBS"


def check(context: Context) -> list[Finding]:
    """Every rank calls it; rank 0 returns the findings."""
    world = context.world
    if not (world.distributed and dist.is_initialized()):
        return []  # one process: no link to measure
    pinned = _expectation(os.environ, PINNED_EXPECTATION_ENV)
    found = measured(context.device, world.node_rank, context.settings.link_fraction,
                     assume_fabric=pinned is not None)
    uses_nccl = context.device.type == "cuda"
    mine = links_transport.read_own(os.environ, world.node_rank, len(found.ranks_by_node),
                                    os.getpid()) if uses_nccl and world.local_rank == 0 else None
    reports: list = [None] * world.world_size
    dist.all_gather_object(reports, mine)
    if not world.is_main:
        return []
    return judged(found, context.settings.link_fraction, pinned, uses_nccl) + \
        links_transport.judge([r for r in reports if r is not None], uses_nccl)


def measured(device: torch.device, node_rank: int, fraction: float, nbytes: int | None = None,
             iters: int | None = None, assume_fabric: bool = False) -> LinkMeasurements:
    """Every link measured (links_measure.measure), then what looks slow against the others
    measured again: what the pre-flight and `ft doctor` judge. Every rank calls it."""
    found = measure(device, node_rank, nbytes, iters, assume_fabric)
    _measure_suspects_again(found, fraction, device, nbytes, iters)
    return found


def _measure_suspects_again(found: LinkMeasurements, fraction: float, device: torch.device,
                            nbytes: int | None, iters: int | None) -> None:
    """Rank 0 picks the suspects; all measure them again; each keeps its better figure
    (links_verdict.suspects says why)."""
    box = [links_verdict.suspects(found, fraction) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    if not box[0]:
        return
    started = time.perf_counter()
    again = {(m.kind, tuple(m.nodes)): m
             for m in measure_groups(found, box[0], device, nbytes, iters)}
    for m in found.results:
        second = again.get((m.kind, tuple(m.nodes)))
        if second is not None:
            m.busbw_gbs, m.timed = max(m.busbw_gbs, second.busbw_gbs), m.timed + second.timed
            m.rounds += 1
    found.seconds += time.perf_counter() - started


def judged(found: LinkMeasurements, fraction: float, pinned: float | None,
           uses_nccl: bool) -> list[Finding]:
    """The profile's figure only on a real fabric with NCCL; a pinned one everywhere."""
    if pinned is not None:
        return links_verdict.judge(found, fraction, pinned, absolute=True,
                                   expected_by=PINNED_EXPECTATION_ENV)
    expected = _expectation(os.environ, FABRIC_EXPECTED_BUSBW)
    return links_verdict.judge(found, fraction, expected,
                               absolute=uses_nccl and not found.single_host)


def _expectation(environ, name: str) -> float | None:
    value = environ.get(name)
    if not value:
        return None
    try:
        gbs = float(value)
    except ValueError:
        gbs = 0.0
    if gbs <= 0:
        raise UserError(f"{name}={value!r}: give the expected all-reduce bus bandwidth "
                        "between two nodes in GB/s (a number above 0), or unset it")
    return gbs
