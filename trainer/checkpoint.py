"""Checkpoint completeness and auto-resume.

The transformers Trainer writes `checkpoint-N/` in place; a job killed mid-save leaves a
directory that looks like a checkpoint but is not. After every save finishes on all ranks,
rank 0 writes a marker file (atomically: temp name, then rename). Resume only trusts
checkpoints that carry the marker, so an interrupted save is skipped, never loaded.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from transformers import TrainerCallback

COMPLETE_MARKER = "ft-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(directory: Path, step: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".ft-complete.", dir=directory)
    with os.fdopen(fd, "w") as handle:
        json.dump({"step": step}, handle)
    os.replace(tmp, directory / COMPLETE_MARKER)


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = _CHECKPOINT.match(path.name)
        if match and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def set_aside_incomplete(output_dir: Path) -> list[Path]:
    """Rename checkpoints without the marker to `incomplete-checkpoint-N`: the Trainer's
    rotation and any later resume then never mistake them for real ones."""
    moved = []
    if not output_dir.is_dir():
        return moved
    for path in output_dir.iterdir():
        if _CHECKPOINT.match(path.name) and not (path / COMPLETE_MARKER).is_file():
            target = path.with_name(f"incomplete-{path.name}")
            try:
                path.rename(target)
            except FileNotFoundError:  # another node moved it first
                continue
            moved.append(target)
    return moved


def resolve_resume(setting: str | None, auto: bool | None, output_dir: Path) -> str | None:
    """`resume_from_checkpoint: auto` (or Axolotl's auto_resume_from_checkpoints) -> the
    newest complete checkpoint, or None for a fresh start; an explicit path is checked."""
    if setting in (None, "") and not auto:
        return None
    if setting in (None, "", "auto"):
        checkpoints = complete_checkpoints(output_dir)
        return str(checkpoints[-1]) if checkpoints else None
    path = Path(setting)
    if not path.is_dir():
        raise FileNotFoundError(f"`resume_from_checkpoint`: {setting} is not a directory")
    return str(path)


class CompleteCheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once the Trainer has finished writing it."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has written its part (RNG state, optimizer shards)
        if state.is_world_process_zero:
            directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if directory.is_dir():
                mark_complete(directory, state.global_step)
        return control
