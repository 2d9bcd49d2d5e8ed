"""Test-only, through ft's FT_TRAINER_HOOKS: rank FT_TEST_HANG_RANK stops making steps after
step FT_TEST_HANG_AFTER_STEP, alive (a sleep that releases the GIL, so its heartbeat threads
go on) as a rank hung in its own code is: a stuck data loader, a callback in a loop. The
other ranks go on into the next step and wait for it in a collective.

Only os, time and transformers are imported: a job may copy this file on its own."""

from __future__ import annotations

import os
import time

from transformers import TrainerCallback

RANK_ENV, STEP_ENV = "FT_TEST_HANG_RANK", "FT_TEST_HANG_AFTER_STEP"


class _Hang(TrainerCallback):
    def __init__(self, after_step: int) -> None:
        self.after_step = after_step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.after_step:
            print(f"test hook: rank {os.environ.get('RANK')} hangs after step "
                  f"{state.global_step}", flush=True)
            time.sleep(3600)
        return control


def install(trainer) -> None:
    if os.environ.get("RANK") == os.environ[RANK_ENV]:
        trainer.add_callback(_Hang(int(os.environ[STEP_ENV])))
