"""Checkpoint completeness and auto-resume.

The transformers Trainer writes `checkpoint-N/` in place; a job killed mid-save leaves a
directory that looks like a checkpoint but is not. After every save has finished on all
ranks, rank 0 writes a marker (temp name, fsync, rename) that lists every file of the
checkpoint with its size and checksum (trainer/checkpoint/manifest.py). Resume trusts a
checkpoint only if its files still match that list, newest first: a checkpoint torn after
marking (a lost or truncated file, a disk that lied) is set aside with the reason, and the
next older one is tried, instead of crashing on the same files at every retry.

The marker is trusted only in the exact shape ft writes (manifest.py's
marker_shape_problem): valid JSON of any other shape, and an older ft's step-only marker
(format 1, no file list), cannot vouch for the files, so such a checkpoint is set aside as
"unverifiable", never trusted and never a crash at every restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.checkpoint.manifest import build_manifest, manifest_problem, marker_shape_problem
from trainer.checkpoint.output_lease import LEASE_FILE
from trainer.distributed.rank_zero import decided_by_rank_zero
from trainer.torch_free.errors import UserError

log = logging.getLogger("ft.checkpoint")

COMPLETE_MARKER = "ft-complete.json"
MARKER_FORMAT = 2  # 1 held only the step
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SET_ASIDE_PREFIX = "incomplete-"


def mark_complete(directory: Path, step: int, names: list[str] | None = None,
                  world_size: int = 1, trained_with: dict | None = None) -> None:
    """Write the marker listing `names` (default: the files directly in `directory`, as for
    the final model beside its checkpoints) and, for a checkpoint, what it was trained with
    (trainer/checkpoint/resume_guard.py)."""
    from trainer.checkpoint.manifest import list_files

    if names is None:
        skip = frozenset({COMPLETE_MARKER, LEASE_FILE})  # the lease is held while marking
        names = list(list_files(directory, skip=skip, recursive=False))
    marker = {"format": MARKER_FORMAT, "step": step, "world_size": world_size,
              "files": build_manifest(directory, names)}
    if trained_with is not None:
        marker["trained_with"] = trained_with
    fd, tmp = tempfile.mkstemp(prefix=".ft-complete.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(marker, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())  # the marker must never reach the disk before its content
    os.replace(tmp, directory / COMPLETE_MARKER)


def read_marker(directory: Path) -> tuple[dict | None, str | None]:
    """(the marker, None) when `directory` has one of the exact shape ft writes, else
    (None, why not). Never raises on what a marker file contains."""
    marker_file = directory / COMPLETE_MARKER
    if not marker_file.is_file():
        return None, "no completion marker (the save did not finish)"
    try:
        marker = json.loads(marker_file.read_text())
    except (OSError, ValueError) as exc:
        return None, f"unreadable completion marker ({exc})"
    if shape := marker_shape_problem(marker, MARKER_FORMAT):
        return None, f"unverifiable marker ({shape})"
    return marker, None


def checkpoint_problem(directory: Path) -> str | None:
    """Why `directory` cannot be resumed from, or None when it verifies."""
    marker, problem = read_marker(directory)
    if marker is None:
        return problem
    return manifest_problem(directory, marker["files"])


def checkpoint_dirs(output_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` directory, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return sorted(found)


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Checkpoints that carry a marker, oldest first (not verified: see checkpoint_problem)."""
    return [p for _, p in checkpoint_dirs(output_dir) if (p / COMPLETE_MARKER).is_file()]


def set_aside(path: Path) -> Path:
    """Rename a checkpoint that must not be resumed from out of the Trainer's sight. The
    name is unique (time, host, pid, random), so a second interrupted save of the same
    step never collides with the first one set aside."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    suffix = f"{stamp}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    target = path.with_name(f"{SET_ASIDE_PREFIX}{path.name}.{suffix}")
    path.rename(target)
    return target


def choose_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; every newer one, and every unmarked one, is set
    aside with its reason logged. Rank 0 only: it renames directories."""
    chosen = None
    for _, path in reversed(checkpoint_dirs(output_dir)):
        if chosen is not None and (path / COMPLETE_MARKER).is_file():
            continue  # older complete ones stay for rotation; only the newest is verified
        problem = checkpoint_problem(path)
        if problem is None and chosen is None:
            chosen = path
            continue
        try:
            target = set_aside(path)
        except FileNotFoundError:  # another process moved it first
            continue
        except OSError as exc:  # read-only, a mount point: skipped all the same
            log.warning("%s cannot be resumed from: %s; could not set it aside (%s): "
                        "skipped", path.name, problem, exc)
            continue
        log.warning("%s cannot be resumed from: %s; set aside as %s", path.name, problem,
                    target.name)
    return chosen


def resolve_resume(setting: str | None, auto: bool | None, output_dir: Path) -> str | None:
    """`resume_from_checkpoint: auto` (or Axolotl's auto_resume_from_checkpoints) -> the
    newest checkpoint that verifies, or None for a fresh start; an explicit path is checked."""
    if setting in (None, "") and not auto:
        return None
    if setting in (None, "", "auto"):
        chosen = choose_checkpoint(output_dir)
        if chosen is None:
            log.warning("no complete checkpoint in %s: starting at step 0", output_dir)
            return None
        log.info("resuming from %s (the newest checkpoint whose files match its marker)",
                 chosen)
        return str(chosen)
    return _explicit(Path(setting))


def _explicit(path: Path) -> str:
    """A checkpoint the user named: it must exist and, if ft marked it, still verify."""
    if not path.is_dir():
        raise UserError(f"`resume_from_checkpoint`: {path} is not a directory")
    marker, problem = read_marker(path)
    if marker is None:
        # Named by the user: not set aside, but not trusted either.
        log.warning("%s has no ft completion marker that can vouch for it (%s): resuming "
                    "from it unverified", path, problem)
        return str(path)
    if problem := manifest_problem(path, marker["files"]):
        raise UserError(f"`resume_from_checkpoint`: {path} is damaged: {problem}")
    return str(path)


def agree_on_resume(setting: str | None, auto: bool | None, output_dir: Path,
                    check: Callable[[Path, dict | None], Any] | None = None
                    ) -> tuple[str | None, Any]:
    """Rank 0 verifies and chooses; every rank gets its choice, so no two ranks resume from
    different steps. `check(checkpoint, its marker)`, also on rank 0 only and before any
    model is loaded, may refuse the choice with a UserError
    (trainer/checkpoint/resume_guard.py); it is then raised on every rank, and what it
    returns is returned beside the choice. A rank
    that cannot see the chosen directory stops with a clear error: its node does not share
    the checkpoint storage."""
    import torch.distributed as dist

    def decide() -> tuple[str | None, Any]:
        resume = resolve_resume(setting, auto, output_dir)
        if resume is None or check is None:
            return resume, None
        return resume, check(Path(resume), read_marker(Path(resume))[0])

    resume, verdict = decided_by_rank_zero(decide)
    if resume is not None and not Path(resume).is_dir():
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        raise UserError(f"rank {rank} on {socket.gethostname()} cannot see "
                        f"{resume}, the checkpoint rank 0 resumes from: `output_dir` must be "
                        "storage that every node shares")
    return resume, verdict
