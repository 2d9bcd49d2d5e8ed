"""Slurm: sbatch --parsable, squeue (sacct when the job has left the controller), scontrol,
scancel, and the job's --output/--error files for logs (login and compute nodes share them).

Accounting is optional on Slurm clusters; without it a job vanishes from squeue MinJobAge
(300 s by default) after it ends, and ft says so instead of guessing an outcome.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.base import Backend, Rendered, Submitted
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.slurm.log_tail import tail_files
from orchestrator.backends.slurm.stop_causes import attempt_causes, describe
from orchestrator.backends.tool_output import failure_text
from orchestrator.process import Completed

if TYPE_CHECKING:
    from orchestrator.spec.load import Spec
from orchestrator.spec.launch_schema import duration_seconds
from trainer.torch_free.errors import UserError

# id, state, time used, node count, nodelist or (reason), restarts (requeues), when it was
# preempted: -O because -o has neither of the last two; a ":|" suffix makes the columns
# '|'-separated like -o's.
SQUEUE_FIELDS = ("JobID:|,State:|,TimeUsed:|,NumNodes:|,ReasonList:|,RestartCnt:|,"
                 "PreemptTime:")
SACCT_FIELDS = "JobID,State,Elapsed,NNodes,NodeList"
_STATES = {
    JobState.PENDING: ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                       "RESV_DEL_HOLD", "SUSPENDED"),
    JobState.RUNNING: ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING",
                       "STOPPED"),
    JobState.SUCCEEDED: ("COMPLETED",),
    JobState.CANCELLED: ("CANCELLED",),
    # PREEMPTED is final: a job Slurm requeues on preemption (PreemptMode=REQUEUE and
    # --requeue) never shows it; it goes RUNNING -> COMPLETING (PreemptTime set, RestartCnt
    # already counted) -> PENDING (BeginTime). Only a job that was not requeued
    # (PreemptMode=CANCEL, or --no-requeue) ends PREEMPTED (seen on Slurm 22.05.8,
    # tests/fixtures/tool_outputs/*preempt*).
    JobState.FAILED: ("FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                      "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"),
}
_NOT_REQUEUED = "preempted and not requeued (PreemptMode=CANCEL, or the job was --no-requeue)"
_NO_TIME = ("", "N/A", "None", "Unknown")
_LOG_TAIL_BYTES = 1 << 16
STATE_OF = {raw: state for state, raws in _STATES.items() for raw in raws}
_OUTPUT_OPTION = re.compile(r"^#SBATCH\s+--(output|error)=(\S+)", re.MULTILINE)
_KEY_VALUE = re.compile(r"(?:^|\s)([A-Za-z][\w/:]*)=(.*?)(?=\s[A-Za-z][\w/:]*=|\s*$)")
_KILL_WAIT = re.compile(r"^KillWait\s*=\s*(\d+) sec", re.MULTILINE)
_UNREACHABLE_HINT = ("run ft on a login node of the cluster, or point SLURM_CONF at its "
                     "slurm.conf; `scontrol ping` checks the controller")


def slurm_status(raw_state: str, elapsed: str = "", nodes: str = "",
                 detail: str = "") -> JobStatus:
    # sacct writes "CANCELLED by 0"; the first word is the state.
    word = raw_state.split()[0] if raw_state.strip() else ""
    if word == "PREEMPTED":
        detail = f"{_NOT_REQUEUED}; {detail}" if detail else _NOT_REQUEUED
    return JobStatus(STATE_OF.get(word, JobState.UNKNOWN), raw_state, elapsed, nodes, detail)


def parse_squeue(text: str) -> dict[str, JobStatus]:
    """`squeue -O SQUEUE_FIELDS` lines (the restart count and preemption time are optional
    columns: older captures have fewer)."""
    statuses = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) not in (5, 6, 7):
            continue
        job_id, state, elapsed, count, where = parts[:5]
        restarts = int(parts[5]) if len(parts) > 5 and parts[5].strip().isdigit() else 0
        preempted_at = parts[6].strip() if len(parts) > 6 else ""
        reason = where[1:-1] if where.startswith("(") and where.endswith(")") else ""
        nodes = "" if reason else where
        status = slurm_status(state, elapsed, nodes or count,
                              "" if reason in ("", "None") else reason)
        if preempted_at not in _NO_TIME and not status.state.final:
            # Being preempted: the job's ranks save now; Slurm requeues it (or ends it).
            status = _with_detail(status, f"preempted at {preempted_at}")
        statuses[job_id] = with_restarts(status, restarts)
    return statuses


def parse_sacct(text: str) -> dict[str, JobStatus]:
    statuses = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) == 5 and "." not in parts[0]:  # skip job steps (123.batch)
            job_id, state, elapsed, count, nodelist = parts
            statuses[job_id] = slurm_status(state, elapsed, nodelist or count)
    return statuses


def with_restarts(status: JobStatus, restarts: int) -> JobStatus:
    if not restarts:
        return status
    return _with_detail(status, f"requeued {restarts} time{'s' if restarts != 1 else ''}")


def _with_detail(status: JobStatus, said: str) -> JobStatus:
    """`said` first, then what the status already said."""
    detail = f"{said}; {status.detail}" if status.detail else said
    return JobStatus(status.state, status.raw, status.elapsed, status.nodes, detail)


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - _LOG_TAIL_BYTES))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def parse_scontrol_job(text: str) -> dict[str, str]:
    """`scontrol -o show job` (one line of Key=Value pairs; values may hold spaces)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return dict(_KEY_VALUE.findall(line))


def output_files(sbatch_text: str, job_id: str, job_name: str, workdir: Path) -> list[str]:
    """Where the job's stdout/stderr go, from the script's #SBATCH --output/--error lines."""
    paths = []
    for _, pattern in _OUTPUT_OPTION.findall(sbatch_text):
        # The filename patterns ft renders: %j (job id), %x (job name), %A (array master).
        name = (pattern.replace("%%", "\0").replace("%j", job_id).replace("%A", job_id)
                .replace("%x", job_name).replace("\0", "%"))
        path = str(workdir / name)
        if path not in paths:
            paths.append(path)
    return paths


def _with_stop_cause(record: JobRecord, status: JobStatus) -> JobStatus:
    """Say why each attempt stopped: for a requeued job (`requeued 2 times (attempt 1: time
    limit, attempt 2: preempted)`), and for one that is stopping or has ended (`attempt 1:
    cancelled`)."""
    requeued = status.detail.startswith("requeued ")
    stopping = status.state.final or status.raw == "COMPLETING"
    if not (requeued or stopping):
        return status
    # --error's file gets slurmstepd's lines and the script's; the header is in both.
    logs = [p for p in record.log_files if p.endswith(".err")] or record.log_files
    causes = next(filter(None, (attempt_causes(_log_tail(path)) for path in logs)), {})
    if not causes:
        return status
    if requeued:
        said, _, rest = status.detail.partition("; ")
        detail = f"{said} ({describe(causes)})" + (f"; {rest}" if rest else "")
    else:
        newest = max(causes)
        said = f"attempt {newest}: {causes[newest]}"
        detail = f"{said}; {status.detail}" if status.detail else said
    return JobStatus(status.state, status.raw, status.elapsed, status.nodes, detail)


class SlurmJobs(Backend):
    """The job's life through the slurm tools (submit output, status, logs, cancel)."""

    def check_ready(self) -> None:
        self.require_tool()
        result = self.run_tool(["scontrol", "ping"])
        if result.returncode != 0 or "DOWN" in result.stdout:
            raise UserError(f"sbatch is installed but Slurm's controller does not answer:\n"
                            f"{failure_text(result)}\nTo fix: {_UNREACHABLE_HINT}.")


    def cluster_notes(self, spec: Spec) -> list[str]:
        """KillWait is how long Slurm waits between SIGTERM and SIGKILL on `scancel` (ft
        cancel) and at the time limit itself; the ranks need launch.stop_grace. The
        time-limit warning (--signal, stop_grace + 60 s ahead) is not affected."""
        result = self.run_tool(["scontrol", "show", "config"])
        match = _KILL_WAIT.search(result.stdout) if result.returncode == 0 else None
        if match is None:
            return []
        kill_wait, grace = int(match.group(1)), duration_seconds(spec.launch.stop_grace)
        if kill_wait >= grace:
            return []
        return [f"launch.stop_grace is {grace} s but this cluster's KillWait is {kill_wait} s: "
                f"`ft cancel` (scancel) SIGKILLs the ranks {kill_wait} s after their SIGTERM, "
                "so a save that takes longer is lost (the time-limit warning still leaves the "
                f"whole grace); lower launch.stop_grace or ask for KillWait >= {grace}"]

    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        job_id = result.stdout.strip().splitlines()[-1].split(";")[0] if result.stdout else ""
        if not job_id.isdigit():
            raise UserError(f"sbatch printed no job id: {result.stdout.strip()!r}")
        script = next(text for name, text in rendered.files.items() if name.endswith(".sbatch"))
        name = re.search(r"^#SBATCH\s+--job-name=(\S+)", script, re.MULTILINE)
        return Submitted(job_id, log_files=output_files(script, job_id,
                                                        name.group(1) if name else "", workdir))

    def explain_failure(self, result: Completed) -> str:
        text = failure_text(result)
        if "Unable to contact slurm controller" in text or "resolve_ctls" in text:
            return _UNREACHABLE_HINT
        if "node configuration is not available" in text:
            return ("no node has what the spec asks: compare launch.cpus_per_node / memory / "
                    "gpus_per_node and launch.slurm with `sinfo -N -l`")
        return ""

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        ids = [r.job_id for r in records]
        result = self.run_tool(["squeue", "-h", "-t", "all", "-j", ",".join(ids),
                                    "-O", SQUEUE_FIELDS])
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise UserError(f"squeue failed:\n{failure_text(result)}\nTo fix: {_UNREACHABLE_HINT}.")
        found = parse_squeue(result.stdout) if result.returncode == 0 else {}
        missing = [job_id for job_id in ids if job_id not in found]
        if missing:
            found.update(self._from_accounting(missing))
        return {r.ref: _with_stop_cause(r, found[r.job_id]) for r in records}

    def _from_accounting(self, ids: list[str]) -> dict[str, JobStatus]:
        result = self.run_tool(["sacct", "-n", "-P", "-X", "-j", ",".join(ids),
                                    "-o", SACCT_FIELDS])
        found = parse_sacct(result.stdout) if result.returncode == 0 else {}
        why = ("no longer in squeue and not in accounting" if result.returncode == 0 else
               f"no longer in squeue, and sacct cannot tell ({failure_text(result)})")
        gone = JobStatus(JobState.UNKNOWN, "gone", detail=f"{why}; its log shows how it ended")
        return {job_id: found.get(job_id, gone) for job_id in ids}

    def _show_job(self, record: JobRecord) -> dict[str, str]:
        result = self.run_tool(["scontrol", "-o", "show", "job", record.job_id])
        return parse_scontrol_job(result.stdout) if result.returncode == 0 else {}

    def details(self, record: JobRecord) -> list[str]:
        job = self._show_job(record)
        lines = [f"{key}: {job[key]}" for key in ("ExitCode", "Reason", "NodeList", "RunTime",
                                                  "Restarts")
                 if job.get(key) not in (None, "", "None", "(null)")]
        return lines + [f"log: {path}" for path in self._log_paths(record, job)]

    def _log_paths(self, record: JobRecord, job: dict[str, str] | None = None) -> list[str]:
        job = self._show_job(record) if job is None else job
        paths = [job[key] for key in ("StdOut", "StdErr") if job.get(key)] or record.log_files
        return list(dict.fromkeys(paths))  # --output and --error may be one file

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        paths = [Path(p) for p in self._log_paths(record)]
        if not paths:
            raise UserError(f"ft does not know where job {record.ref} writes its output")
        if follow:
            yield from tail_files(paths, done=lambda: self._ended(record))
            return
        for path in paths:
            if len(paths) > 1:
                yield f"==> {path} <=="
            try:
                yield from path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                yield f"(no output yet: {path} does not exist; is the job still pending?)"

    def _ended(self, record: JobRecord) -> bool:
        status = self.statuses([record])[record.ref]
        return status.state.final or status.raw == "gone"

    def cancel(self, record: JobRecord) -> str:
        result = self.run_tool(["scancel", record.job_id])
        if result.returncode != 0:
            raise UserError(f"scancel {record.job_id} failed:\n{failure_text(result)}")
        return result.stdout.strip()
