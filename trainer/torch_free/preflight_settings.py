"""`launch.preflight`: what the pre-flight checks on the job's own nodes before step 1, and when
a finding stops the job (torch-free: the spec, `ft node` and the trainer's ranks all read it).

`ft node` hands the settings to the ranks as one JSON value in PREFLIGHT_ENV; a rank started
without it (a plain `ft train`) runs no pre-flight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainer.torch_free.liveness import seconds

PREFLIGHT_ENV = "FT_PREFLIGHT"
# A failed pre-flight ends the job with this code on every layer (78: EX_CONFIG, "something
# about this setup is wrong"), never with a crash's 1 nor a resumable 75: a requeue would meet
# the same bad node or storage again unless it is excluded. It travels up like a user error's
# code (trainer.torch_free.exit_codes USER_ERROR_REPORT: local rank 0 reports, ft node exits).
PREFLIGHT_FAILED_EXIT_CODE = 78
# Under output_dir: the machine-readable record of the last pre-flight (one JSON object).
PREFLIGHT_RECORD = "preflight.json"
MIN_STORAGE_WINDOW_S = 5
# Set by `ft node` for its ranks: the sha256 of the spec file it read, which the pre-flight's
# software check compares across the nodes.
SPEC_SHA256_ENV = "FT_SPEC_SHA256"
# In a job's environment (`ft doctor --backend X` submits it so): every node's `ft node` runs
# only the pre-flight's checks, as `ft node --doctor` does, and no training.
DOCTOR_ONLY_ENV = "FT_DOCTOR_ONLY"


class Preflight(BaseModel):
    """`launch.preflight: false` turns it off; `true` (the default) is every check with the
    thresholds below."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    gpu_fraction: float = Field(0.7, gt=0, le=1, description="A GPU whose bf16 matmul rate "
                                "(or free memory) is under this fraction of the median of the "
                                "job's GPUs is named, and the job stops.")
    link_fraction: float = Field(0.5, gt=0, le=1, description="A node pair whose all-reduce bus "
                                 "bandwidth is under this fraction of the median pair's (or of "
                                 "the cluster profile's expectation) is named, and the job "
                                 "stops.")
    storage_window: str = Field("30s", description="How long a file one node writes under "
                                "output_dir may take to appear on the others (shared storage's "
                                "visibility delay).")
    checkpoint_rehearsal: bool = Field(True, description="Save the real model state at step 0 "
                                       "as a checkpoint, verify it and load it back, so a "
                                       "checkpoint that cannot be written or read fails in the "
                                       "first minutes.")

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value):
        if isinstance(value, bool):
            return {"enabled": value}
        return value

    @field_validator("storage_window")
    @classmethod
    def _window(cls, value: str) -> str:
        text = str(value).strip()
        if len(text) < 2 or text[-1] not in "smh" or not text[:-1].isdigit():
            raise ValueError(f"`storage_window: {value}` is not a duration; use a number and a "
                             "unit (s, m, h), e.g. 30s")
        if seconds(text) < MIN_STORAGE_WINDOW_S:
            raise ValueError(f"`storage_window: {value}` is too short; use at least "
                             f"{MIN_STORAGE_WINDOW_S}s (shared storage may take seconds to "
                             "show another node's file)")
        return text

    def storage_window_s(self) -> int:
        return seconds(self.storage_window)

    def env(self) -> dict[str, str]:
        """What ft node tells the ranks (nothing when the pre-flight is off)."""
        return {PREFLIGHT_ENV: self.model_dump_json()} if self.enabled else {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Preflight | None:
        text = environ.get(PREFLIGHT_ENV)
        return cls.model_validate(json.loads(text)) if text else None
