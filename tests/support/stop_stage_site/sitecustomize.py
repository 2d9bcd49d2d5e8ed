"""Test-only: on PYTHONPATH of a launch that tests a stop at one start-up stage, every
Python process of the job imports this at start; only with FT_TEST_STOP_STAGE set does it
arm the stage's pause point (tests/support/stop_stages.py); the later stages arm through
FT_TRAINER_HOOKS instead."""

import os

if os.environ.get("FT_TEST_STOP_STAGE") in ("torchrun", "imports"):
    import tests.support.stop_stages  # noqa: F401  (arms the pause point)
