"""What ft knows about a job: the record it keeps, and a status read from the backend."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum


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
    job_id: str  # Slurm job id, dstack run name, SkyPilot job id
    name: str  # launch.name
    spec: str  # absolute path of the spec file
    spec_sha256: str
    rendered_dir: str  # absolute path of the rendered files
    submitted_at: str  # ISO 8601, UTC
    workdir: str  # where ft launch ran (Slurm resolves relative log paths here)
    log_files: list[str] = field(default_factory=list)  # Slurm stdout/stderr, known at submit
    cluster: str | None = None  # SkyPilot cluster (not for managed jobs)
    managed: bool = False  # a SkyPilot managed job (`sky jobs ...`)

    @property
    def ref(self) -> str:
        """How to name this job unambiguously on the command line."""
        return f"{self.backend}:{self.job_id}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> JobRecord:
        known = {f.name for f in fields(cls)}  # tolerate keys a newer ft wrote
        return cls(**{key: value for key, value in data.items() if key in known})
