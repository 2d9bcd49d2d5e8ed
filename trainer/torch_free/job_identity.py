"""Which job this process belongs to: the scheduler's job id, as `ft node` exports it
(FT_JOB_ID: the one id that survives the job's restarts and requeues, new for each
submission). Opaque here: two processes with the same value are attempts of one job.
Torch-free: the output_dir lease reads it before anything heavy is imported."""

from __future__ import annotations

from collections.abc import Mapping

JOB_ID_ENV = "FT_JOB_ID"


def job_identity(env: Mapping[str, str]) -> str | None:
    """The job's id, or None outside a scheduler's job (`ft train` by hand)."""
    return env.get(JOB_ID_ENV) or None
