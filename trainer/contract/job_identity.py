"""Which backend job this process belongs to: the one variable of each backend that
survives the job's restarts (Slurm's SLURM_JOB_ID, kept by `scontrol requeue`; dstack's
DSTACK_RUN_NAME, kept by `retry`; SkyPilot's SKYPILOT_TASK_ID, kept by managed-job
recovery). Torch-free: the output_dir lease reads it before anything heavy is imported."""

from __future__ import annotations

from collections.abc import Mapping

JOB_ID_VARIABLES = ("SLURM_JOB_ID", "DSTACK_RUN_NAME", "SKYPILOT_TASK_ID")


def job_identity(env: Mapping[str, str]) -> str | None:
    """`VARIABLE=value` of the first backend job variable present, else None."""
    return next((f"{name}={env[name]}" for name in JOB_ID_VARIABLES if env.get(name)), None)
