"""A Modal job's life through the `modal` CLI: the app id `launch` prints, `modal app list
--json` for its state, `modal app logs` and `modal app stop`.

An app's list entry says whether it is running, not how it ended: a stopped app's outcome
is the result line the app's last stage prints (markers.RESULT_MARK), read back from its logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from orchestrator.backends.base import Backend, Rendered, Submitted
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.modal.markers import APP_ID_MARK, RESULT_MARK
from orchestrator.backends.tool_output import failure_text, json_after_chatter, plain
from orchestrator.process import Completed
from orchestrator.status_text import format_seconds
from trainer.torch_free.errors import UserError

# modal/cli/app.py APP_STATE_TO_MESSAGE, as `modal app list --json` prints them.
_STATES = {"initializing...": JobState.PENDING, "ephemeral": JobState.RUNNING,
           "ephemeral (detached)": JobState.RUNNING, "deployed": JobState.RUNNING,
           "stopping...": JobState.RUNNING, "disabled": JobState.CANCELLED}
_APP_ID = re.compile(r"\bap-[A-Za-z0-9]{22}\b")
_NO_TOKEN_HINT = "run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"


def app_status(entry: dict, outcome: str | None) -> JobStatus:
    """One app of `modal app list --json`; `outcome` is the result line of a stopped app."""
    raw = entry.get("state") or ""
    tasks = entry.get("tasks")
    nodes = f"{tasks} container(s)" if tasks not in (None, "0") else ""
    elapsed = _elapsed(entry.get("created_at"), entry.get("stopped_at"))
    if raw != "stopped":
        return JobStatus(_STATES.get(raw, JobState.UNKNOWN), raw, elapsed, nodes)
    if outcome is None:
        return JobStatus(JobState.CANCELLED, raw, elapsed, nodes, "stopped before its last "
                         "stage reported (modal app stop, a timeout, or a failed start)")
    if outcome.startswith("succeeded"):
        return JobStatus(JobState.SUCCEEDED, raw, elapsed, nodes)
    return JobStatus(JobState.FAILED, raw, elapsed, nodes, outcome)


def result_line(log_text: str) -> str | None:
    """What the last `ft-modal-result:` line says, or None when there is none."""
    found = [line.split(RESULT_MARK, 1)[1].strip() for line in plain(log_text).splitlines()
             if RESULT_MARK in line]
    return found[-1] if found else None


def _elapsed(created: str | None, stopped: str | None) -> str:
    if not created:
        return ""
    start = datetime.fromisoformat(created)
    end = datetime.fromisoformat(stopped) if stopped else datetime.now(start.tzinfo)
    return format_seconds((end - start).total_seconds())


class ModalJobs(Backend):
    """The job's life through the modal CLI (submit output, status, logs, stop)."""

    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        text = plain(result.stdout + "\n" + result.stderr)
        marked = [line.split(APP_ID_MARK, 1)[1].strip() for line in text.splitlines()
                  if APP_ID_MARK in line]
        found = marked[-1:] or _APP_ID.findall(text)[:1]
        if not found:
            raise UserError("modal did not print an app id; see `modal app list`. Its "
                            f"output ended with:\n{text.strip()[-1500:]}")
        return Submitted(found[0])

    def explain_failure(self, result: Completed) -> str:
        return _NO_TOKEN_HINT if "Token missing" in failure_text(result) else ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        result = self.run_tool(["modal", "app", "list", "--json"])
        if result.returncode != 0:
            hint = self.explain_failure(result)
            raise UserError(f"modal app list failed:\n{failure_text(result)}"
                            + (f"\nTo fix: {hint}." if hint else ""))
        apps = {entry.get("app_id"): entry for entry in json_after_chatter(result.stdout)}
        found = {}
        for record in records:
            entry = apps.get(record.job_id)
            if entry is None:
                found[record.ref] = JobStatus(JobState.UNKNOWN, "not found", detail="not in "
                                              "`modal app list` (it lists recently stopped "
                                              "apps only)")
                continue
            outcome = self._outcome(record) if entry.get("state") == "stopped" else None
            found[record.ref] = app_status(entry, outcome)
        return found

    def _outcome(self, record: JobRecord) -> str | None:
        result = self.run_tool(["modal", "app", "logs", record.job_id, "--search", RESULT_MARK])
        return result_line(result.stdout) if result.returncode == 0 else None

    def details(self, record: JobRecord) -> list[str]:
        return [f"dashboard: https://modal.com/apps (app {record.job_id})"]

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        argv = ["modal", "app", "logs", record.job_id, *(["--follow"] if follow else [])]
        return self.tool_log_lines(argv, follow)

    def cancel(self, record: JobRecord) -> str:
        result = self.run_tool(["modal", "app", "stop", record.job_id, "--yes"])
        said = failure_text(result) if result.returncode else plain(result.stdout).strip()
        if result.returncode and "already stopped" not in said:
            raise UserError(f"modal app stop failed:\n{said}")
        return said
