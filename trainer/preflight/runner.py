"""Run the pre-flight inside the training ranks and act on its verdict.

`before_model` runs right after the process group is up (every check but the rehearsal);
the checkpoint rehearsal concludes through `conclude` from its own callback. Every rank calls
both at the same point: the checks are collectives. Rank 0 judges, then the verdict is
broadcast, so every rank ends the same way: a failed pre-flight raises PreflightFailed (a
UserError: under `ft node` the rank leaves its report and `ft node` exits 78 naming the node).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from trainer.distributed.world_ranks import WorldRanks
from trainer.preflight import links_check
from trainer.preflight.findings import Finding
from trainer.torch_free.errors import UserError
from trainer.torch_free.preflight_settings import (
    PREFLIGHT_FAILED_EXIT_CODE,
    PREFLIGHT_RECORD,
    Preflight,
)
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.preflight")


class PreflightFailed(UserError):
    exit_code = PREFLIGHT_FAILED_EXIT_CODE


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
    if settings is None:
        return
    device = torch.device("cuda", world.local_rank) if torch.cuda.is_available() \
        else torch.device("cpu")
    context = Context(settings, cfg, world, device, Path(cfg.output_dir))
    findings: list[Finding] = []
    for check in _checks():
        findings += check(context)
    conclude(findings, "nodes", context)


def _checks() -> list[Check]:
    """In order: each may leave the links or storage busy for the next."""
    return [links_check.check]


def conclude(findings: list[Finding], phase: str, context: Context) -> None:
    """Rank 0's findings to every rank; print and record them; raise if any failed."""
    findings = _shared(findings, context.world)
    if context.world.is_main:
        for finding in findings:
            mark = "ok  " if finding.ok else "FAIL"
            print(f"ft pre-flight: {mark} {finding.check:10} {finding.where()}: "
                  f"{finding.detail}", flush=True)
        _record(context.output_dir, phase, findings)
    failed = [f for f in findings if not f.ok]
    if failed:
        raise PreflightFailed(
            "pre-flight failed: " + "; ".join(f"{f.where()}: {f.detail}" for f in failed)
            + " (not starting training; fix it, or set `launch.preflight: false` to train "
            "anyway)")


def _shared(findings: list[Finding], world: WorldRanks) -> list[Finding]:
    if not (world.distributed and dist.is_initialized()):
        return findings
    box = [findings if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _record(output_dir: Path, phase: str, findings: list[Finding]) -> None:
    """preflight.json under output_dir: one key per phase (atomic replace)."""
    path = output_dir / PREFLIGHT_RECORD
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        record = {}
    record[phase] = [f.record() for f in findings]
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
