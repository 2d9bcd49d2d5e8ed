"""Fault injection into the checkpoint rehearsal through ft's FT_TRAINER_HOOKS (the product
carries no test instrumentation). FT_TEST_REHEARSAL_FAULT picks the fault:

- `hide`: rank 1's RNG state, which rank 1 wrote and listed, is gone before rank 0 looks
  for it: what rank 0 meets when a node writes its shards to storage rank 0 does not see.
- `corrupt`: a shard of the rehearsal checkpoint is cut short after it was marked and
  verified, just before it is loaded back (a disk that lost the tail of a file).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.distributed as dist

from trainer.preflight import rehearsal
from trainer.preflight.scratch import SCRATCH

HOOK = "tests.support.rehearsal_faults:install"
FAULT_ENV = "FT_TEST_REHEARSAL_FAULT"


def env(fault: str) -> dict[str, str]:
    return {"FT_TRAINER_HOOKS": HOOK, FAULT_ENV: fault}


def install(trainer) -> None:
    {"hide": _hide_rank_one_file, "corrupt": _corrupt_before_load}[os.environ[FAULT_ENV]](
        trainer)


def _hide_rank_one_file(trainer) -> None:
    listed = rehearsal.gather_listings

    def gather_listings(directory: Path):
        views = listed(directory)
        if dist.get_rank() == 1:
            (directory / "rng_state_1.pth").unlink()
        dist.barrier()  # hidden before rank 0 looks
        return views

    rehearsal.gather_listings = gather_listings


def _corrupt_before_load(trainer) -> None:
    load = trainer._load_optimizer_and_scheduler

    def load_optimizer_and_scheduler(checkpoint):
        if SCRATCH in Path(checkpoint).parts:
            scheduler = Path(checkpoint) / "scheduler.pt"
            scheduler.write_bytes(scheduler.read_bytes()[:20])
        return load(checkpoint)

    trainer._load_optimizer_and_scheduler = load_optimizer_and_scheduler
