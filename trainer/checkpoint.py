"""Checkpoint completeness and auto-resume.

The transformers Trainer writes `checkpoint-N/` in place; a job killed mid-save leaves a
directory that looks like a checkpoint but is not. After every save has finished on all
ranks, rank 0 writes a marker (temp name, fsync, rename) that lists every file of the
checkpoint with its size and checksum (trainer/checkpoint_manifest.py). Resume trusts a
checkpoint only if its files still match that list, newest first: a checkpoint torn after
marking (a lost or truncated file, a disk that lied) is set aside with the reason, and the
next older one is tried, instead of crashing on the same files at every retry.
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
from pathlib import Path

from trainer.checkpoint_manifest import build_manifest, manifest_problem
from trainer.contract.errors import UserError

log = logging.getLogger("ft.checkpoint")

COMPLETE_MARKER = "ft-complete.json"
MARKER_FORMAT = 2  # 1 held only the step
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
SET_ASIDE_PREFIX = "incomplete-"


def mark_complete(directory: Path, step: int, names: list[str] | None = None,
                  world_size: int = 1) -> None:
    """Write the marker listing `names` (default: the files directly in `directory`, as for
    the final model beside its checkpoints)."""
    from trainer.checkpoint_manifest import list_files

    if names is None:
        names = list(list_files(directory, skip=frozenset({COMPLETE_MARKER}), recursive=False))
    marker = {"format": MARKER_FORMAT, "step": step, "world_size": world_size,
              "files": build_manifest(directory, names)}
    fd, tmp = tempfile.mkstemp(prefix=".ft-complete.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump(marker, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())  # the marker must never reach the disk before its content
    os.replace(tmp, directory / COMPLETE_MARKER)


def checkpoint_problem(directory: Path) -> str | None:
    """Why `directory` cannot be resumed from, or None when it verifies."""
    marker_file = directory / COMPLETE_MARKER
    if not marker_file.is_file():
        return "no completion marker (the save did not finish)"
    try:
        marker = json.loads(marker_file.read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable completion marker ({exc})"
    if "files" not in marker:  # marked by an ft before manifests: nothing to verify against
        return None
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
    if not (path / COMPLETE_MARKER).is_file():
        log.warning("%s has no ft completion marker: resuming from it unverified", path)
        return str(path)
    if problem := checkpoint_problem(path):
        raise UserError(f"`resume_from_checkpoint`: {path} is damaged: {problem}")
    return str(path)


def agree_on_resume(setting: str | None, auto: bool | None, output_dir: Path) -> str | None:
    """Rank 0 verifies and chooses; every rank gets its choice, so no two ranks resume from
    different steps. A rank that cannot see the chosen directory stops with a clear error:
    its node does not share the checkpoint storage."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return resolve_resume(setting, auto, output_dir)
    choice = [resolve_resume(setting, auto, output_dir) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(choice, src=0)
    resume = choice[0]
    if resume is not None and not Path(resume).is_dir():
        raise UserError(f"rank {dist.get_rank()} on {socket.gethostname()} cannot see "
                        f"{resume}, the checkpoint rank 0 resumes from: `output_dir` must be "
                        "storage that every node shares")
    return resume
