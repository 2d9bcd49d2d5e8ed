"""SkyPilot: a job on a cluster (`sky launch` / `sky queue` / `sky logs` / `sky cancel`) or a
managed job (`sky jobs launch` / `queue` / `logs` / `cancel`). Status comes from `-o json`;
SkyPilot prints progress lines before the JSON, which `json_after_chatter` skips."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.backends.base import Backend, Rendered, Submitted
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.tool_output import failure_text, json_after_chatter, plain
from orchestrator.process import Completed
from orchestrator.status_text import format_seconds
from trainer.torch_free.errors import UserError

# sky.skylet.job_lib.JobStatus and sky.jobs.state.ManagedJobStatus values.
_STATES = {
    JobState.PENDING: ("INIT", "PENDING", "SETTING_UP", "SUBMITTED", "STARTING"),
    JobState.RUNNING: ("RUNNING", "RECOVERING", "CANCELLING", "WINDING_DOWN"),
    JobState.SUCCEEDED: ("SUCCEEDED",),
    JobState.CANCELLED: ("CANCELLED",),
}
STATE_OF = {raw: state for state, raws in _STATES.items() for raw in raws}
_JOB_ID = re.compile(r"Job submitted, ID: (\d+)|^(?:Managed )?Job ID: (\d+)", re.MULTILINE)
_NO_CLOUD_HINT = "run `sky check` to set up credentials for at least one cloud or Kubernetes"


def sky_status(record: dict, now: float | None = None) -> JobStatus:
    """A JobStatus from one job of `sky queue -o json` or `sky jobs queue -o json`."""
    raw = record.get("status") or ""
    state = STATE_OF.get(raw, JobState.FAILED if raw.startswith("FAILED") else JobState.UNKNOWN)
    if record.get("job_duration") is not None:  # managed jobs report their run time
        elapsed = format_seconds(record["job_duration"])
    elif record.get("start_at"):
        elapsed = format_seconds((record.get("end_at") or now or time.time())
                                 - record["start_at"])
    else:
        elapsed = ""
    detail = record.get("failure_reason") or record.get("details") or ""
    return JobStatus(state, raw, elapsed, record.get("resources") or "", detail)


def _option(argv: Sequence[str], *names: str) -> str | None:
    for index, part in enumerate(argv[:-1]):
        if part in names:
            return argv[index + 1]
    return None


@dataclass(frozen=True)
class SkyJob:
    """What ft keeps about a SkyPilot job beyond the shared record (JobRecord.extra): the
    cluster it runs on, or that it is a managed job (`sky jobs ...`, no cluster of its own)."""

    cluster: str | None = None
    managed: bool = False

    def extra(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, record: JobRecord) -> SkyJob:
        return cls(record.extra.get("cluster"), bool(record.extra.get("managed", False)))


class SkyPilotJobs(Backend):
    """The job's life through the skypilot tools (submit output, status, logs, cancel)."""

    def check_ready(self) -> None:
        # `sky check` probes every cloud and takes minutes: credentials problems are read
        # from the launch's own error instead (explain_failure).
        self.require_tool()


    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        text = plain(result.stdout + "\n" + result.stderr)
        match = _JOB_ID.search(text)
        if match is None:
            raise UserError("SkyPilot did not print a job id; see `sky queue` / "
                            f"`sky jobs queue`. Its output ended with:\n{text.strip()[-1500:]}")
        job_id = match.group(1) or match.group(2)
        argv = rendered.submit_argv
        if argv[1:3] == ["jobs", "launch"]:
            return Submitted(job_id, extra=SkyJob(managed=True).extra())
        return Submitted(job_id, extra=SkyJob(cluster=_option(argv, "--cluster", "-c")).extra())

    def explain_failure(self, result: Completed) -> str:
        text = failure_text(result)
        if "NoCloudAccessError" in text or "Cloud access is not set up" in text:
            return _NO_CLOUD_HINT
        return ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        managed = [r for r in records if SkyJob.of(r).managed]
        if managed:
            found.update(self._managed_statuses(managed))
        on_clusters = [r for r in records if not SkyJob.of(r).managed]
        clusters = sorted({SkyJob.of(r).cluster for r in on_clusters} - {None})
        if clusters:
            found.update(self._cluster_statuses(on_clusters, clusters))
        return found

    def _managed_statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        result = self.run_tool(["sky", "jobs", "queue", "--all", "-o", "json"])
        if result.returncode != 0:
            gone = JobStatus(JobState.UNKNOWN, "no controller", detail=failure_text(result))
            return {r.ref: gone for r in records}
        jobs = {str(job.get("job_id")): job for job in json_after_chatter(result.stdout)}
        missing = JobStatus(JobState.UNKNOWN, "not found", detail="not in `sky jobs queue`")
        return {r.ref: sky_status(jobs[r.job_id]) if r.job_id in jobs else missing
                for r in records}

    def _cluster_statuses(self, records: Sequence[JobRecord],
                          clusters: list[str]) -> dict[str, JobStatus]:
        result = self.run_tool(["sky", "queue", *clusters, "-o", "json"])
        if result.returncode != 0:
            raise UserError(f"sky queue failed:\n{failure_text(result)}")
        queues = json_after_chatter(result.stdout)
        found = {}
        for record in records:
            cluster = SkyJob.of(record).cluster
            jobs = {str(job.get("job_id")): job for job in queues.get(cluster, [])}
            if record.job_id in jobs:
                found[record.ref] = sky_status(jobs[record.job_id])
            else:
                found[record.ref] = JobStatus(
                    JobState.UNKNOWN, "no cluster" if cluster not in queues else
                    "not found", detail=f"cluster {cluster} is down or gone "
                    "(`sky status`)" if cluster not in queues else "")
        return found

    def details(self, record: JobRecord) -> list[str]:
        sky = SkyJob.of(record)
        if sky.managed:
            return [f"controller log: sky jobs logs --controller {record.job_id}"]
        return [f"cluster: {sky.cluster}  (`sky down {sky.cluster}` when done)"]

    def _logs_argv(self, record: JobRecord, follow: bool) -> list[str]:
        flag = "--follow" if follow else "--no-follow"
        sky = SkyJob.of(record)
        if sky.managed:
            return ["sky", "jobs", "logs", record.job_id, flag]
        return ["sky", "logs", str(sky.cluster), record.job_id, flag]

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        return self.tool_log_lines(self._logs_argv(record, follow), follow)

    def cancel(self, record: JobRecord) -> str:
        sky = SkyJob.of(record)
        argv = (["sky", "jobs", "cancel", record.job_id, "--yes"] if sky.managed else
                ["sky", "cancel", str(sky.cluster), record.job_id, "--yes"])
        result = self.run_tool(argv)
        if result.returncode != 0:
            raise UserError(f"{' '.join(argv[:3])} failed:\n{failure_text(result)}")
        return plain(result.stdout).strip()
