"""An FT_TRAINER_HOOKS entry that makes every rank say something at each level, so a test
can see whose records reach the job log, and how they are labelled."""

from __future__ import annotations

import logging
import warnings

HOOK = "tests.support.rank_voices:speak"


def speak(trainer) -> None:
    rank = trainer.args.process_index
    log = logging.getLogger("ft.test-hook")  # under `ft`: INFO is allowed on rank 0
    log.info("info from rank %d", rank)
    log.warning("warning from rank %d", rank)
    warnings.warn(f"python warning from rank {rank}", UserWarning, stacklevel=1)
