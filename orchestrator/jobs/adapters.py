"""The per-backend side of a job's life, behind one interface, chosen by backend name."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.backends.registry import SUBMIT_TOOLS
from orchestrator.jobs.model import JobRecord, JobStatus
from orchestrator.process import Completed, run_cmd
from orchestrator.rendering import Rendered
from trainer.contract.errors import UserError


@dataclass(frozen=True)
class Submitted:
    """What a submit command's output told us about the new job."""

    job_id: str
    cluster: str | None = None
    managed: bool = False
    log_files: list[str] = field(default_factory=list)


class Adapter(Protocol):
    backend: str

    def check_ready(self) -> None:
        """Raise a UserError saying how to fix it when the tool is missing or unconfigured."""

    def submit_argv(self, argv: list[str]) -> list[str]:
        """The rendered submit command, plus what ft needs to read its output."""

    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        ...

    def explain_failure(self, result: Completed) -> str:
        """A hint for a failed submit, from the tool's message ("" when none applies)."""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        """Current status by `record.ref`; as few tool calls as the backend allows."""

    def details(self, record: JobRecord) -> list[str]:
        """Extra `key: value` lines for `ft status JOB` (log paths, exit codes)."""

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        ...

    def cancel(self, record: JobRecord) -> str:
        """Ask the backend to stop the job; returns the tool's confirmation, if any."""


def adapter(backend: str) -> Adapter:
    if backend == "slurm":
        from orchestrator.jobs.slurm import SlurmAdapter as cls
    elif backend == "dstack":
        from orchestrator.jobs.dstack import DstackAdapter as cls
    elif backend == "skypilot":
        from orchestrator.jobs.skypilot import SkyPilotAdapter as cls
    else:
        raise UserError(f"ft cannot follow {backend!r} jobs; it knows slurm, dstack, skypilot")
    return cls()


def require_tool(backend: str) -> None:
    tool, how = SUBMIT_TOOLS[backend]
    if shutil.which(tool) is None:
        raise UserError(f"`{tool}` is not on PATH, so ft cannot reach {backend}. "
                        f"To fix: {how}.")


def run_tool(backend: str, argv: Sequence[str]) -> Completed:
    """run_cmd, with a missing program reported as the user's fixable problem."""
    try:
        return run_cmd(argv)
    except FileNotFoundError:
        tool, how = SUBMIT_TOOLS[backend]
        raise UserError(f"`{argv[0]}` is not on PATH, so ft cannot reach {backend}. "
                        f"To fix: {how}.") from None
