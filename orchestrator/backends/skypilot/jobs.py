"""SkyPilot: a job on a cluster (`sky launch` / `sky queue` / `sky logs` / `sky cancel`) or a
managed job (`sky jobs launch` / `queue` / `logs` / `cancel`). Status comes from `-o json`;
SkyPilot prints progress lines before the JSON, which `json_after_chatter` skips."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestrator.backends.base import Backend, Rendered, Submitted
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.tool_output import failure_text, json_after_chatter, plain
from orchestrator.process import Completed
from orchestrator.status_text import format_seconds
from trainer.contract.errors import UserError

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
            return Submitted(job_id, managed=True)
        return Submitted(job_id, cluster=_option(argv, "--cluster", "-c"))

    def explain_failure(self, result: Completed) -> str:
        text = failure_text(result)
        if "NoCloudAccessError" in text or "Cloud access is not set up" in text:
            return _NO_CLOUD_HINT
        return ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        managed = [r for r in records if r.managed]
        if managed:
            found.update(self._managed_statuses(managed))
        clusters = sorted({r.cluster for r in records if not r.managed and r.cluster})
        if clusters:
            found.update(self._cluster_statuses([r for r in records if not r.managed],
                                                clusters))
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
            jobs = {str(job.get("job_id")): job for job in queues.get(record.cluster, [])}
            if record.job_id in jobs:
                found[record.ref] = sky_status(jobs[record.job_id])
            else:
                found[record.ref] = JobStatus(
                    JobState.UNKNOWN, "no cluster" if record.cluster not in queues else
                    "not found", detail=f"cluster {record.cluster} is down or gone "
                    "(`sky status`)" if record.cluster not in queues else "")
        return found

    def details(self, record: JobRecord) -> list[str]:
        if record.managed:
            return [f"controller log: sky jobs logs --controller {record.job_id}"]
        return [f"cluster: {record.cluster}  (`sky down {record.cluster}` when done)"]

    def _logs_argv(self, record: JobRecord, follow: bool) -> list[str]:
        flag = "--follow" if follow else "--no-follow"
        if record.managed:
            return ["sky", "jobs", "logs", record.job_id, flag]
        return ["sky", "logs", str(record.cluster), record.job_id, flag]

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        return self.tool_log_lines(self._logs_argv(record, follow), follow)

    def cancel(self, record: JobRecord) -> str:
        argv = (["sky", "jobs", "cancel", record.job_id, "--yes"] if record.managed else
                ["sky", "cancel", str(record.cluster), record.job_id, "--yes"])
        result = self.run_tool(argv)
        if result.returncode != 0:
            raise UserError(f"{' '.join(argv[:3])} failed:\n{failure_text(result)}")
        return plain(result.stdout).strip()
