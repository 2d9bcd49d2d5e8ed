"""What ft knows about a job: the record it keeps, and a status read from the backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """One vocabulary across backends; each status also keeps the backend's own word."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    raw: str = ""  # the backend's own state, e.g. COMPLETING, "no fleets", FAILED_SETUP
    elapsed: str = ""  # run time as the backend reports it
    nodes: str = ""  # node list or count
    detail: str = ""  # why: pending reason, exit code, termination message

    @property
    def label(self) -> str:
        """STATE, plus the backend's word when it says more (e.g. `RUNNING (COMPLETING)`)."""
        if self.raw and self.raw.upper() != self.state.value:
            return f"{self.state.value} ({self.raw})"
        return self.state.value


@dataclass(frozen=True)
class JobRecord:
    """One submitted job, as kept in the state file."""

    backend: str
    job_id: str  # the backend's own id for it (a job id, a run name)
    name: str  # launch.name
    spec: str  # absolute path of the spec file
    spec_sha256: str
    rendered_dir: str  # absolute path of the rendered files
    submitted_at: str  # ISO 8601, UTC
    workdir: str  # where ft launch ran (relative log paths are relative to it)
    log_files: list[str] = field(default_factory=list)  # log files known at submit, if any
    # What only this job's backend keeps about it (Submitted.extra), JSON values.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How to name this job unambiguously on the command line."""
        return f"{self.backend}:{self.job_id}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobRecord:
        known = {f.name for f in fields(cls)}  # tolerate keys a newer ft wrote
        shared = {key: value for key, value in data.items() if key in known}
        if "extra" not in data:  # written before `extra`: backends' fields were top-level
            shared["extra"] = {key: value for key, value in data.items() if key not in known}
        return cls(**shared)
