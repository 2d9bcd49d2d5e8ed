"""FT_TRAINER_HOOKS entry for tests: write the allocator variables the training process runs
with to the file FT_TEST_ENV_RECORD names."""

from __future__ import annotations

import json
import os

from orchestrator.cli.allocator_env import ALLOC_VARS


def install(trainer) -> None:
    with open(os.environ["FT_TEST_ENV_RECORD"], "w") as f:
        json.dump({name: os.environ.get(name) for name in ALLOC_VARS}, f)
