"""A full disk (or quota) during a save is the user's to fix: say so, with the free space.

Without this, a full disk surfaces as whatever the writer happened to be: torch's zip
writer says "unexpected pos 80064 vs 79952", safetensors "IoError(... StorageFull ...)",
torch DCP a CheckpointException wrapping every rank's traceback.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.torch_free.errors import UserError

_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
# How the writers word ENOSPC / EDQUOT when they do not raise an OSError.
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "StorageFull",
               "QuotaExceeded", "unexpected pos", "file write failed")


@contextmanager
def disk_full_is_a_user_error(output_dir: Path) -> Iterator[None]:
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # torch DCP's CheckpointException is a BaseException
        reason = full_disk_reason(exc)
        if reason is None:
            raise
        raise UserError(disk_full_message(output_dir, reason)) from None


def full_disk_reason(exc: BaseException) -> str | None:
    """What said the disk is full, searching causes and DCP's per-rank failures."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return _FULL_ERRNOS[current.errno]
        text = str(current) if not hasattr(current, "failures") else ""
        if hit := next((t for t in _FULL_TEXTS if t in text), None):
            return f"the writer reported {hit!r}"
        todo += [current.__cause__, current.__context__]
        todo += [pair[0] for pair in getattr(current, "failures", {}).values()]
    return None


def disk_full_message(output_dir: Path, reason: str) -> str:
    where = _existing(output_dir)
    usage = shutil.disk_usage(where)
    return (f"disk full while writing to {output_dir} ({reason}): {_gib(usage.free)} free of "
            f"{_gib(usage.total)} on the filesystem of {where}. Free space (set-aside "
            "`incomplete-checkpoint-*` directories can go), lower `save_total_limit`, or "
            "point `output_dir` at a larger volume; the next run resumes from the newest "
            "complete checkpoint.")


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
