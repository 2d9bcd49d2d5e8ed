"""Test-only, through ft's FT_TRAINER_HOOKS: once training is over (on_train_end, before the
final save), rank FT_TEST_LATE_STOP_RANK sends SIGTERM to its node's `ft node` and waits
for it to be forwarded: a time limit or preemption that comes after the last step. The run
must still finish and exit 0 (it used to kill the rank: exit 1 from torchrun)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from transformers import TrainerCallback

HOOK = "tests.support.late_stop_signal:install"
RANK_ENV = "FT_TEST_LATE_STOP_RANK"


def env(rank: int) -> dict[str, str]:
    """What a test adds to a launch's environment to send that late signal from `rank`."""
    return {"FT_TRAINER_HOOKS": HOOK, RANK_ENV: str(rank)}


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class _LateStop(TrainerCallback):
    def on_train_end(self, args, state, control, **kwargs):
        node = _parent(os.getppid())  # rank -> torchrun -> ft node
        os.kill(node, signal.SIGTERM)
        time.sleep(2)  # ft node forwards it to this rank, which is still saving
        return control


def install(trainer) -> None:
    if os.environ.get("RANK", "0") == os.environ[RANK_ENV]:
        trainer.add_callback(_LateStop())
