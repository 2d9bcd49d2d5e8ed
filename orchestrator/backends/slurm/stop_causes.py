"""Why each attempt of a Slurm job stopped, from the job's --error log.

squeue no longer says why a requeued job stopped, and sacct is optional; the log does. The
batch script (templates/slurm.sbatch.j2) asks Slurm's job record why it was stopped and
writes one line per attempt (`ft: attempt 2 stopped: time limit (exit 75); requeueing ...`),
and slurmstepd adds its own (`*** JOB 7 ON n1 CANCELLED AT ... DUE TO PREEMPTION ***`), which
is there even when Slurm requeues the job itself and ends the script before its last line.
"""

from __future__ import annotations

import re

_ATTEMPT_HEADER = re.compile(r"^==== ft: job \d+ attempt (\d+) ====$", re.MULTILINE)
# The script's verdict once srun has returned; its SIGTERM/SIGUSR1 trap's first reading.
_SCRIPT_SAID = re.compile(r"^ft: attempt \d+ stopped: (.+?) \(exit -?\d+\)", re.MULTILINE)
_TRAP_SAID = re.compile(r"^ft: attempt \d+: SIG\w+ \((.+?)\):", re.MULTILINE)
# What slurmstepd says when Slurm itself ends the attempt.
_SLURM_SAID = (("DUE TO PREEMPTION", "preempted"), ("DUE TO TIME LIMIT", "time limit"),
               ("DUE TO NODE FAILURE", "node failure"),
               ("DUE TO JOB REQUEUE", "scontrol requeue"))
# The script cannot tell a preemption from an admin's `scontrol requeue` (both show the
# restart already counted); slurmstepd's line can.
_VAGUE = "requeued by Slurm"
# Scripts rendered before ft recorded causes: their trap's only line.
_OLD_TRAP = ("ft: stop signal", "stop signal")


def attempt_causes(log_text: str) -> dict[int, str]:
    """{attempt number: why it stopped} for every attempt of the log that says so."""
    headers = list(_ATTEMPT_HEADER.finditer(log_text))
    causes = {}
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(log_text)
        cause = _cause(log_text[header.end():end])
        if cause:
            causes[int(header.group(1))] = cause
    return causes


def _cause(attempt_text: str) -> str:
    said = _SCRIPT_SAID.search(attempt_text)
    if said and said.group(1) != _VAGUE:
        # Before slurmstepd's words: the script's own `scontrol requeue` (after a time limit,
        # say) makes slurmstepd write "DUE TO JOB REQUEUE" too.
        return said.group(1)
    for needle, cause in _SLURM_SAID:
        if needle in attempt_text:
            return cause
    trapped = _TRAP_SAID.search(attempt_text)
    if trapped:
        return trapped.group(1)
    if said:
        return said.group(1)
    return _OLD_TRAP[1] if _OLD_TRAP[0] in attempt_text else ""


def describe(causes: dict[int, str]) -> str:
    """`attempt 1: time limit, attempt 2: preempted`."""
    return ", ".join(f"attempt {number}: {cause}" for number, cause in sorted(causes.items()))
