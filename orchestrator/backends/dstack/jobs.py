"""dstack: `dstack apply -f FILE -y -d`, `dstack ps --json`, `dstack logs` (or
`dstack attach --logs` to follow), `dstack stop -y`. A job is a run, named by its run name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from orchestrator.backends.base import Backend, Rendered, Submitted
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.tool_output import failure_text, plain
from orchestrator.process import Completed, stream_cmd
from orchestrator.status_text import format_seconds
from trainer.torch_free.errors import UserError

# dstack's RunStatus values; `terminated` is resolved by the termination reason.
_STATES = {"pending": JobState.PENDING, "submitted": JobState.PENDING,
           "provisioning": JobState.PENDING, "running": JobState.RUNNING,
           "terminating": JobState.RUNNING, "done": JobState.SUCCEEDED,
           "failed": JobState.FAILED}
_TERMINATED = {"all_jobs_done": JobState.SUCCEEDED, "stopped_by_user": JobState.CANCELLED,
               "aborted_by_user": JobState.CANCELLED}
_SUBMITTED = re.compile(r"^Run (\S+) submitted", re.MULTILINE)
_MISSING_VOLUME = re.compile(r"Volume (\[.*?\]) not found")
_CONFIGURE_HINT = ("start a server with `dstack server` (it configures this machine), or add "
                   "your server with `dstack project add --name NAME --url URL --token TOKEN`")


def run_status(run: dict) -> JobStatus:
    """A JobStatus from one run of `dstack ps --json`."""
    status, reason = run.get("status", ""), run.get("termination_reason")
    state = _TERMINATED.get(reason, JobState.FAILED) if status == "terminated" else \
        _STATES.get(status, JobState.UNKNOWN)
    submission = run.get("latest_job_submission") or {}
    detail = submission.get("termination_reason_message") or ""
    if state in (JobState.PENDING, JobState.RUNNING) and run.get("status_message") != status:
        detail = run.get("status_message") or detail  # e.g. "no fleets", "pulling"
    raw = status if not reason else f"{status}: {reason}"
    return JobStatus(state, raw, _elapsed(run), str(len(run.get("jobs") or [])), detail)


def _elapsed(run: dict) -> str:
    try:
        start = datetime.fromisoformat(run["submitted_at"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(run["last_processed_at"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError):
        return ""
    return format_seconds((end - start).total_seconds())


def runs_by_name(ps_json: str) -> dict[str, dict]:
    """The newest run of each name (dstack lists newest first)."""
    runs: dict[str, dict] = {}
    for run in json.loads(ps_json).get("runs", []):
        runs.setdefault(run.get("run_spec", {}).get("run_name", ""), run)
    return runs


class DstackJobs(Backend):
    """The job's life through the dstack tools (submit output, status, logs, cancel)."""

    def check_ready(self) -> None:
        self.require_tool()
        result = self.run_tool(["dstack", "ps", "--json", "--last", "1"])
        if result.returncode != 0:
            raise UserError(f"dstack is installed but cannot reach a server/project:\n"
                            f"{failure_text(result)}\nTo fix: {_CONFIGURE_HINT}.")


    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        match = _SUBMITTED.search(plain(result.stdout))
        if match is None:
            raise UserError(f"dstack apply did not say which run it submitted:\n"
                            f"{plain(result.stdout).strip()[-1500:]}")
        return Submitted(match.group(1))

    def explain_failure(self, result: Completed) -> str:
        text = failure_text(result)
        if "No default project" in text:
            return _CONFIGURE_HINT
        if "Error pulling configuration for image" in text:
            return "the image must be pullable from where the dstack server runs"
        if missing := _MISSING_VOLUME.search(text):
            return (f"create the network volume {missing.group(1)} first: a dstack volume "
                    "configuration (`type: volume`, its `name`, `backend`, `region`, `size`) "
                    "applied once with `dstack apply -f`; or mount a shared filesystem as an "
                    "instance volume (`launch.volumes[].source`, README \"Checkpoint storage\")")
        return ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        result = self.run_tool(["dstack", "ps", "--all", "--json"])
        if result.returncode != 0:
            raise UserError(f"dstack ps failed:\n{failure_text(result)}")
        runs = runs_by_name(result.stdout)
        missing = JobStatus(JobState.UNKNOWN, "not found", detail="not in `dstack ps --all` "
                            "(deleted, or another project: set DSTACK_PROJECT)")
        return {r.ref: run_status(runs[r.job_id]) if r.job_id in runs else missing
                for r in records}

    def details(self, record: JobRecord) -> list[str]:
        return [f"logs: dstack logs {record.job_id}  (node 0; --job N for node N)"]

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        # `dstack logs` prints what is stored and exits; `attach --logs` follows a live run
        # but refuses a finished one ("Run NAME is failed").
        if follow and not self.statuses([record])[record.ref].state.final:
            yield from stream_cmd(["dstack", "attach", "--logs", record.job_id])
            return
        result = self.run_tool(["dstack", "logs", record.job_id])
        if result.returncode != 0:
            raise UserError(f"dstack logs {record.job_id} failed:\n{failure_text(result)}")
        yield from result.stdout.splitlines()

    def cancel(self, record: JobRecord) -> str:
        result = self.run_tool(["dstack", "stop", record.job_id, "-y"])
        if result.returncode != 0:
            raise UserError(f"dstack stop {record.job_id} failed:\n{failure_text(result)}")
        return plain(result.stdout).strip()
