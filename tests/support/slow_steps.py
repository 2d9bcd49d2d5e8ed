"""Test-only, through ft's FT_TRAINER_HOOKS: each optimizer step of a Slurm job's first
attempt takes FT_TEST_STEP_DELAY_S seconds longer, so that a time-limit warning (sent on
slurmctld's periodic check, every 30 s) surely lands mid-training, however fast the machine.
A requeued attempt (SLURM_RESTART_COUNT > 0) runs at full speed. Sleeping changes no number.

Only os, time and transformers are imported: a job copies this file into a directory of its
own for PYTHONPATH, with the checkout off it."""

from __future__ import annotations

import os
import time

from transformers import TrainerCallback

DELAY_ENV = "FT_TEST_STEP_DELAY_S"


class _SlowSteps(TrainerCallback):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)
        return control


def install(trainer) -> None:
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) == 0:
        trainer.add_callback(_SlowSteps(float(os.environ[DELAY_ENV])))
