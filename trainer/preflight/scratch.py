"""The pre-flight's scratch folder under output_dir, and the two collectives its checks share.

Each storage check of an attempt writes in `output_dir/_ft-preflight/<kind>-<nonce>`: the
nonce is drawn by rank 0 for this attempt and handed to every rank, so a file that an earlier
attempt left behind (killed before it cleaned up) is never taken for one of this attempt's.
The folder is named neither `checkpoint-N` nor `incomplete-*`, so resume and rotation
(trainer/checkpoint/resume.py, rotation.py) never see it, and its leading `_` keeps it out of
transformers' Hub uploads of output_dir, as the lease's. Only one run writes an output_dir
at a time (trainer/checkpoint/output_lease.py, taken before the pre-flight), so anything
else under `_ft-preflight` is an earlier attempt's leftover: it is swept.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist

from trainer.distributed.world_ranks import WorldRanks

SCRATCH = "_ft-preflight"


def gather(value: Any, world: WorldRanks) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank (also a barrier)."""
    if not (world.distributed and dist.is_initialized()):
        return [value]
    values: list[Any] = [None] * world.world_size
    dist.all_gather_object(values, value)
    return values


def attempt_folder(output_dir: Path, kind: str, world: WorldRanks) -> Path:
    """`output_dir/_ft-preflight/<kind>-<nonce>`, the same on every rank (not created)."""
    nonce = secrets.token_hex(6) if world.is_main else None
    if world.distributed and dist.is_initialized():
        box = [nonce]
        dist.broadcast_object_list(box, src=0)
        nonce = box[0]
    return output_dir / SCRATCH / f"{kind}-{nonce}"


def sweep(folder: Path) -> None:
    """Remove what earlier attempts left beside `folder` (each node's own view of it)."""
    parent = folder.parent
    if not parent.is_dir():
        return
    for left in parent.iterdir():
        if left.name != folder.name:
            _remove(left)


def remove(folder: Path) -> None:
    """Remove `folder`, and `_ft-preflight` once nothing else is in it; never raises (several
    nodes may remove the same shared folder at once)."""
    _remove(folder)
    # Not empty (another node's files on the way out), or gone already: left to that node.
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
