"""Run the pre-flight inside the training ranks and act on its verdict.

`before_model` runs right after the process group is up (every check but the rehearsal);
the checkpoint rehearsal concludes through `conclude` from its own callback. Every rank calls
both at the same point: the checks are collectives. Rank 0 judges, then the verdict is
broadcast, so every rank ends the same way: a failed pre-flight raises PreflightFailed (a
UserError: under `ft node` the rank leaves its report and `ft node` exits 78 naming the node).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from trainer.distributed.bad_nodes import record_bad_nodes
from trainer.distributed.world_ranks import WorldRanks
from trainer.preflight import report
from trainer.preflight.findings import Finding
from trainer.preflight.placement import gathered, here
from trainer.torch_free.errors import UserError
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE, Preflight
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.preflight")


class PreflightFailed(UserError):
    """Every rank raises it with the same message (the verdict is shared), so under `ft node`
    only each node's local rank 0 prints it."""

    exit_code = PREFLIGHT_FAILED_EXIT_CODE
    said_by_every_rank = True


@dataclass(frozen=True)
class Context:
    settings: Preflight
    cfg: TrainingConfig
    world: WorldRanks
    device: torch.device
    output_dir: Path


# Each check: every rank calls it at the same point; it returns the findings on rank 0.
Check = Callable[[Context], list[Finding]]


def settings_here() -> Preflight | None:
    """The settings `ft node` passed, or None (no pre-flight: a plain `ft train`)."""
    settings = Preflight.from_env(os.environ)
    return settings if settings is not None and settings.enabled else None


def before_model(cfg: TrainingConfig, world: WorldRanks) -> None:
    settings = settings_here()
    if settings is not None:
        run(cfg, world, settings)


def run_alone(cfg: TrainingConfig, settings: Preflight) -> None:
    """`ft doctor` on one rank: the same process group and checks as training's, nothing
    else (no model, no rehearsal)."""
    from trainer.distributed.process_group import join_process_group, leave_process_group

    world = WorldRanks.from_env(os.environ)
    join_process_group(cfg, world)
    try:
        run(cfg, world, settings)
    finally:
        leave_process_group()


def run(cfg: TrainingConfig, world: WorldRanks, settings: Preflight) -> None:
    """Every check but the rehearsal, on every rank (the process group is up); raises
    PreflightFailed on every rank when one failed. `ft doctor` runs only this."""
    started = time.monotonic()
    device = torch.device("cuda", world.local_rank) if torch.cuda.is_available() \
        else torch.device("cpu")
    context = Context(settings, cfg, world, device, Path(cfg.output_dir))
    findings: list[Finding] = []
    for check in _checks():
        findings += check(context)
    conclude(findings, "nodes", context, time.monotonic() - started)


def _checks() -> list[Check]:
    """In order: each may leave the links or storage busy for the next. The software check
    first: a node running other code may not even agree on the collectives that follow."""
    from trainer.preflight import gpu_check, links_check, software_check, storage_check

    return [software_check.check, gpu_check.check, links_check.check, storage_check.check]


def conclude(findings: list[Finding], phase: str, context: Context,
             seconds: float | None = None) -> None:
    """Rank 0's findings to every rank; print and record them; raise if any failed.
    Each node's local rank 0 prints its node's verdict line (its own log says it); rank 0
    prints the table, every node's verdict and the JSON line, and writes preflight.json."""
    world = context.world
    places = gathered(here(world), world)
    findings = _shared(findings, world)
    judged = report.verdicts(findings, places)
    entry = report.record(findings, phase, places, seconds)
    if world.is_main:
        print(report.table(findings, phase, places, seconds), flush=True)
        for node, (host, verdict) in judged.items():
            print(report.verdict_line(node, host, verdict), flush=True)
        print(report.json_line(entry), flush=True)
        report.write_record(context.output_dir, entry)
    elif world.local_rank == 0:
        host, verdict = judged[world.node_rank]
        print(report.verdict_line(world.node_rank, host, verdict), flush=True)
    failed = [f for f in findings if not f.ok]
    if failed:
        if world.is_main:  # a requeue that excludes nodes leaves these out
            record_bad_nodes(sorted({f.node_rank for f in failed if f.node_rank is not None}),
                             "pre-flight: " + "; ".join(f"{f.check}: {f.detail}" for f in failed))
        _leave_together(world)
        raise PreflightFailed(
            "pre-flight failed: " + "; ".join(f"{f.where()}: {f.check}: {f.detail}"
                                              for f in failed)
            + " (not starting training; fix it, or set `launch.preflight: false` to train "
            "anyway)")


def _leave_together(world: WorldRanks) -> None:
    """Every rank has the verdict: leave the process group in order (heartbeats stopped, the
    group destroyed on every rank at once) before the nodes end, so that no rank is still
    talking to a rendezvous store whose node already exited."""
    from trainer.distributed.process_group import leave_process_group

    if world.distributed and dist.is_initialized():
        dist.barrier()
    leave_process_group()


def _shared(findings: list[Finding], world: WorldRanks) -> list[Finding]:
    if not (world.distributed and dist.is_initialized()):
        return findings
    box = [findings if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
