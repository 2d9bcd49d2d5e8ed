"""The one place that starts a process: external programs (each backend's submit, status and
cancel tools), emulated nodes, and the launcher `ft node` hands its node to.

Tests replace `RUNNER` (a finished command's output) and `STREAMER` (lines while a command
runs, for followed logs) with recording fakes instead of patching subprocess everywhere.
"""

from __future__ import annotations

import contextlib
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
    from trainer.torch_free.errors import UserError

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


def spawn_group(argv: Sequence[str], env: dict[str, str], cwd: str,
                die_with_launcher: bool = False) -> subprocess.Popen:
    """Start argv in its own session, stdout and stderr merged into one text pipe; with
    die_with_launcher it gets SIGTERM when this process dies, however it dies."""
    return subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=die_with_parent if die_with_launcher else None)


# Signals `ft node` owns: the launcher under it starts with them ignored (an ignored signal
# stays ignored across exec), so a signal sent to every process of a job step, or a Ctrl-C
# to the terminal's process group, reaches torchrun as nothing and the ranks through their
# own handlers; ft node then gives them the whole grace period instead of torchrun's 30 s.
SUPERVISED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def _ignore_supervised_signals() -> None:
    for signum in SUPERVISED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def spawn_supervised(argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    """Start argv (the launcher) in its own session with the supervised signals ignored;
    its output goes straight to ours (it is the job log)."""
    return subprocess.Popen(list(argv), env=env, start_new_session=True,
                            preexec_fn=_ignore_supervised_signals)


def spawn_init(argv: Sequence[str], env: dict[str, str],
               before_exec: Callable[[], None]) -> subprocess.Popen:
    """Start argv as the first process of the pid namespace its caller has just unshared
    (an isolated emulated node's `ft node`), running before_exec in it first; it gets
    SIGTERM if its parent dies. Output goes straight to ours."""
    def prepare() -> None:
        die_with_parent()
        before_exec()

    return subprocess.Popen(list(argv), env=env, preexec_fn=prepare)


def descendants(pid: int) -> list[int]:
    """Every process below pid (children first), from /proc: torchrun starts each rank in a
    session of its own, so only the tree tells which processes are this node's ranks."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_pid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, queue = [], list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue += children.get(child, [])
    return found


def _parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # pid (comm) state ppid ...; comm may hold spaces and parentheses.
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def pid_exists(pid: int) -> bool:
    """A process with this pid exists (someone else's counts: kill(0) is then refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_status(code: int) -> int:
    """A process's status as a shell reports it: 128 + N for a death by signal N (Popen's
    negative returncode never leaks out as, say, 247)."""
    return 128 - code if code < 0 else code


def catches_signal(pid: int, signum: int) -> bool:
    """Whether pid has a handler for signum (SigCgt in /proc): a process still starting up
    would die of it, or drop it (the first process of a pid namespace), so a stop is held
    back until it catches it."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            status = handle.read()
    except OSError:  # it has just exited
        return False
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(caught & (1 << (signum - 1)))


def signal_pids(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(pid, signum)


def kill_tree(pid: int) -> None:
    """SIGKILL pid and every process below it (ranks live in sessions of their own)."""
    signal_pids([*descendants(pid), pid], signal.SIGKILL)


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when its parent dies, even by SIGKILL (Linux), so an
    emulated node never outlives the `ft launch` that started it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
