"""Fault injection through ft's FT_TRAINER_HOOKS: die like a SIGKILL after the Trainer has
saved checkpoint-N and before ft marks it complete (the window where a kill used to leave no
complete checkpoint). N comes from FT_TEST_KILL_AT_STEP."""

from __future__ import annotations

import os

from trainer.checkpoint.save import CompleteCheckpointMarker

HOOK = "tests.support.kill_before_mark:install"
STEP_ENV = "FT_TEST_KILL_AT_STEP"


def env(step: int) -> dict[str, str]:
    """What a test adds to `ft train`'s environment to be killed at that step."""
    return {"FT_TRAINER_HOOKS": HOOK, STEP_ENV: str(step)}


def install(trainer) -> None:
    step = int(os.environ[STEP_ENV])
    (marker,) = [callback for callback in trainer.callback_handler.callbacks
                 if isinstance(callback, CompleteCheckpointMarker)]
    original = marker.on_save

    def on_save(args, state, control, **kwargs):
        if state.global_step == step:
            os._exit(137)
        return original(args, state, control, **kwargs)

    marker.on_save = on_save
