"""The tables `ft list` and `ft status` print, from the state file plus the backends."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends import get
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.status_text import format_table, since
from trainer.torch_free.errors import UserError

HEADERS = ("JOB", "NAME", "STATE", "ELAPSED", "NODES", "SUBMITTED", "DETAIL")
DETAIL_WIDTH = 60


def query(records: Sequence[JobRecord]) -> dict[str, JobStatus]:
    """Status of every record, one backend query each; a backend that cannot be reached
    gives UNKNOWN with its reason instead of hiding the other backends' jobs."""
    statuses: dict[str, JobStatus] = {}
    for backend in dict.fromkeys(r.backend for r in records):
        group = [r for r in records if r.backend == backend]
        try:
            statuses.update(get(backend).statuses(group))
        except UserError as exc:
            reason = str(exc).splitlines()[0]
            statuses.update({r.ref: JobStatus(JobState.UNKNOWN, "", detail=reason)
                             for r in group})
    return statuses


def _row(record: JobRecord, status: JobStatus) -> list[str]:
    detail = status.detail.replace("\n", " ")
    if len(detail) > DETAIL_WIDTH:
        detail = detail[:DETAIL_WIDTH - 3] + "..."
    return [record.ref, record.name, status.label, status.elapsed, status.nodes,
            since(record.submitted_at), detail]


def jobs_table(records: Sequence[JobRecord], statuses: dict[str, JobStatus]) -> str:
    rows = [_row(r, statuses.get(r.ref, JobStatus(JobState.UNKNOWN))) for r in records]
    return format_table(HEADERS, rows)


def status_text(record: JobRecord) -> str:
    """One job: its table row, then where it came from and what the backend adds."""
    status = query([record])[record.ref]
    lines = [jobs_table([record], {record.ref: status}), ""]
    if status.detail:
        lines.append(f"detail: {status.detail}")
    lines += [f"spec: {record.spec} (sha256 {record.spec_sha256[:12]})",
              f"rendered: {record.rendered_dir}",
              f"submitted: {record.submitted_at}"]
    try:
        lines += get(record.backend).details(record)
    except UserError as exc:
        lines.append(f"(no more details: {str(exc).splitlines()[0]})")
    return "\n".join(lines)
