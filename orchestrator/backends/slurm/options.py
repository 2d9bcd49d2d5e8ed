"""`launch.slurm:`, the spec's Slurm block (LAUNCH_OPTIONS)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from orchestrator.spec.launch_schema import BackendOptions, single_line

# Values that land on `#SBATCH --key=value` lines: sbatch splits those lines itself, so they
# may not contain spaces or quotes (real partition/account/QOS names never do).
SBATCH_VALUE = re.compile(r"^[A-Za-z0-9_.,:&|!*@+=/\[\]-]+$")


def _sbatch_value(value: str | None) -> str | None:
    if value is not None and not SBATCH_VALUE.match(value):
        raise ValueError("may only contain letters, digits and _.,:&|!*@+=/[]-")
    return value


class SlurmOptions(BackendOptions):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = Field(None, description="Slurm time limit, e.g. 2-00:00:00 "
                             "(default: from launch.max_duration).")
    constraint: str | None = None
    reservation: str | None = None
    exclusive: bool = Field(True, description="Whole nodes only (GPU jobs want this).")
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = Field(None, description="Memory per node, e.g. 0 (all) or 500G.")
    extra_sbatch: list[str] = Field(default_factory=list, description="Extra `#SBATCH` "
                                    "options, e.g. ['--mail-type=END'].")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before ft "
                             "node, e.g. 'module load cuda/12.4' (written verbatim).")
    workdir: str | None = Field(None, description="Shared-filesystem directory the job runs "
                                "in (default: where sbatch is called).")
    container_image: str | None = Field(None, description="Run via pyxis/enroot "
                                        "(`srun --container-image`).")

    _sbatch = field_validator("partition", "account", "qos", "time", "constraint",
                              "reservation", "mem")(_sbatch_value)
    _line = field_validator("workdir", "container_image")(single_line)

    @field_validator("extra_sbatch", "setup")
    @classmethod
    def _lines(cls, values: list[str]) -> list[str]:
        for value in values:
            single_line(value)
        return values


# What the spec layer composes (orchestrator.backend_registry.declared_in_options).
LAUNCH_OPTIONS = SlurmOptions
