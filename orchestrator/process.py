"""The one place that starts a process: external programs (sbatch, dstack, sky, scontrol...),
emulated nodes, and the launcher `ft node` hands its node to.

Tests replace `RUNNER` (a finished command's output) and `STREAMER` (lines while a command
runs, for followed logs) with recording fakes instead of patching subprocess everywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _subprocess_runner(argv: Sequence[str], input_text: str | None = None) -> Completed:
    proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True)
    return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


RUNNER: Callable[..., Completed] = _subprocess_runner


def run_cmd(argv: Sequence[str], input_text: str | None = None) -> Completed:
    """Run argv (never through a shell) and capture its output."""
    return RUNNER(argv, input_text=input_text)


def _popen_lines(argv: Sequence[str]) -> Iterator[str]:
    from trainer.contract.errors import UserError

    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
    except FileNotFoundError:
        raise UserError(f"`{argv[0]}` is not on PATH") from None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            yield line.rstrip("\n")
    finally:
        if proc.poll() is None:  # the reader stopped early (Ctrl-C, watch finished)
            proc.terminate()
        proc.wait()


STREAMER: Callable[[Sequence[str]], Iterator[str]] = _popen_lines


def stream_cmd(argv: Sequence[str]) -> Iterator[str]:
    """Lines of a command's stdout and stderr as it prints them (never through a shell)."""
    return STREAMER(argv)


def run_foreground(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run argv with this process's stdout/stderr (its output is the job log); exit code."""
    return subprocess.call(list(argv), env=env)


def exec_replace(argv: Sequence[str], env: dict[str, str]) -> None:
    """Replace this process with argv (never returns): the backend's signals then reach the
    program directly and its exit code is the job's."""
    os.execvpe(argv[0], list(argv), env)


def spawn_group(argv: Sequence[str], env: dict[str, str], cwd: str) -> subprocess.Popen:
    """Start argv in its own process group (so the whole tree below it can be signalled),
    with stdout and stderr merged into one text pipe."""
    return subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def signal_group(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Send signum to the process group a spawn_group process leads, if it still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signum)


def wait_or_kill(proc: subprocess.Popen, grace_s: float) -> None:
    """Wait up to grace_s for the process, then SIGKILL its whole group."""
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
