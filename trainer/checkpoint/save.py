"""After each save: confirm every rank's files, mark the checkpoint complete, then rotate.

Sharded checkpoints hold files from every rank (one torch DCP shard and one RNG state per
rank). Each rank lists what it sees in the checkpoint once its own save returned; rank 0
collects those lists, so the marker names the files of all ranks, not just the ones rank 0
happens to see. When rank 0 cannot see a file another rank wrote (after waiting out NFS
attribute caching), the nodes do not share `output_dir`: the checkpoint is not marked and
the log says why, since no restart could ever resume from it.

Rotation (`save_total_limit`) is done here, after the marker, instead of inside the
Trainer's save, which deletes old checkpoints before the new one is known to be complete.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from transformers import TrainerCallback

from trainer.checkpoint.manifest import list_files
from trainer.checkpoint.resume import COMPLETE_MARKER, mark_complete
from trainer.checkpoint.rotation import rotate

log = logging.getLogger("ft.checkpoint")

# How long rank 0 waits to see other ranks' files: longer than NFS's attribute cache for a
# fresh file; FT_CHECKPOINT_VISIBILITY_WAIT_S raises it for slower storage.
VISIBILITY_WAIT = "FT_CHECKPOINT_VISIBILITY_WAIT_S"
DEFAULT_VISIBILITY_WAIT_S = 30.0
class CompleteCheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once every rank has finished writing it."""

    def __init__(self, save_total_limit: int | None = None,
                 trained_with: dict | None = None) -> None:
        self.save_total_limit = save_total_limit
        self.trained_with = trained_with  # rank 0's record for the resume guard

    def on_save(self, args, state, control, **kwargs):
        directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        views = _gather_listings(directory)  # also the barrier: every rank has saved
        if state.is_world_process_zero and directory.is_dir() and \
                _mark(directory, state.global_step, views, self.trained_with):
            for path in rotate(Path(args.output_dir), self.save_total_limit, directory,
                               best=state.best_model_checkpoint):
                log.info("deleted %s (save_total_limit: %s)", path.name, self.save_total_limit)
        _barrier()  # no rank exits (a graceful stop) before the marker is on disk
        return control


def _mark(directory: Path, step: int, views: list[tuple[int, str, dict[str, int]]],
          trained_with: dict | None = None) -> bool:
    expected: dict[str, tuple[int, int, str]] = {}
    for rank, host, files in views:
        for name, size in files.items():
            if name not in expected or size > expected[name][0]:
                expected[name] = (size, rank, host)
    missing = _wait_visible(directory, {n: s for n, (s, _, _) in expected.items()})
    if missing:
        where = ", ".join(f"{n} (rank {expected[n][1]} on {expected[n][2]})"
                          for n in missing[:5])
        log.error("%s is NOT marked complete: rank 0 on %s cannot see files other ranks "
                  "wrote: %s. `output_dir` must be storage every node shares (a shared "
                  "filesystem or bucket mount); no restart can resume from this checkpoint.",
                  directory.name, socket.gethostname(), where)
        return False
    mark_complete(directory, step, sorted(expected), world_size=len(views),
                  trained_with=trained_with)
    return True


def _wait_visible(directory: Path, expected: dict[str, int]) -> list[str]:
    """Names rank 0 still cannot see at their full size after the visibility wait."""
    wait = float(os.environ.get(VISIBILITY_WAIT, DEFAULT_VISIBILITY_WAIT_S))
    deadline = time.monotonic() + wait
    while True:
        seen = list_files(directory, skip=frozenset({COMPLETE_MARKER}))
        missing = [n for n, size in sorted(expected.items()) if seen.get(n, -1) < size]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(1.0)


def _gather_listings(directory: Path) -> list[tuple[int, str, dict[str, int]]]:
    import torch.distributed as dist

    mine = (0, socket.gethostname(), list_files(directory, skip=frozenset({COMPLETE_MARKER})))
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    mine = (dist.get_rank(), *mine[1:])
    views: list = [None] * dist.get_world_size()
    dist.all_gather_object(views, mine)
    return views


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class SaveAfterFirstStep(TrainerCallback):
    """Axolotl's `save_first_step`: a checkpoint after step 1 proves saving works (disk,
    permissions, shared storage) before hours of training depend on it."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            control.should_save = True
        return control
