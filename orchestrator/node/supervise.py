"""`ft node` owns its ranks: it starts the launcher, turns a stop signal into a clean save on
every rank within a grace period, and exits with one code the backends can act on.

Why not exec torchrun: on SIGTERM torchrun SIGKILLs its workers 30 s later (too short for a
sharded 70B save) and reports the trainer's "stopped, resumable" exit as its own exit 1, so
srun, the batch script and the cloud backends all saw a crash. Here the launcher runs with
the stop signals ignored (see orchestrator.process.spawn_supervised); ft node signals the
ranks themselves, waits up to `launch.stop_grace`, and reads the ranks' clean-stop reports:

    every local rank reported a clean stop -> RESUMABLE_EXIT_CODE (75)
    the launcher exited 0                  -> 0
    every local rank reported it finished  -> 0 (the launcher failed after training was
                                              done: a late stop signal, its exit barrier)
    anything else                          -> the launcher's code (1 if it said 0 or 75)
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.node.peer_reports import waiting_on_peer
from orchestrator.process import (
    SUPERVISED_SIGNALS,
    descendants,
    kill_tree,
    signal_pids,
    spawn_supervised,
)
from trainer.contract.exit_codes import (
    FINISHED_REPORT,
    RESUMABLE_EXIT_CODE,
    STOP_GRACE_ENV,
    STOP_REPORT,
    STOP_REPORT_DIR,
)

POLL_S = 0.2
KILL_MARGIN_S = 15  # after the grace: time for torchrun to notice and exit


class Supervisor:
    def __init__(self, argv: list[str], env: dict[str, str], local_ranks: int,
                 grace_s: float):
        self.argv, self.env = argv, env
        self.local_ranks, self.grace_s = local_ranks, grace_s
        self.stop_requested_at: float | None = None
        self.killed = False
        self.proc = None  # the launcher, once started
        self.reports: str | None = None  # where the ranks report to us
        self.told_stall = False

    def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="ft-stop-") as reports:
            self.reports = reports
            env = {**self.env, STOP_REPORT_DIR: reports, STOP_GRACE_ENV: str(self.grace_s),
                   # torch >= 2.8 honours these: torchrun then leaves SIGTERM/SIGINT to us,
                   # and gives ranks the whole grace when it tears a group down itself.
                   "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGHUP,SIGQUIT",
                   "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(int(self.grace_s))}
            for sig in SUPERVISED_SIGNALS:
                signal.signal(sig, self._on_signal)
            self.proc = spawn_supervised(self.argv, env)
            code = self._wait()
            # The launcher has exited, so the outcome is decided. A late stop signal must not
            # turn it into a death by signal: on Slurm, when another node exits 75 first,
            # srun's --kill-on-bad-exit sends this node SIGTERM while it is about to exit 75
            # too, and a default handler here would make the step end 143 (a crash).
            for sig in SUPERVISED_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            return self._outcome(code, _count(reports, STOP_REPORT),
                                 _count(reports, FINISHED_REPORT))

    def _on_signal(self, signum: int, frame) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            _say(f"{signal.Signals(signum).name} received: asking the ranks to save and stop "
                 f"(grace {self.grace_s:.0f} s)")
        # SIGTERM to every rank (the launcher ignores it): each saves at the end of its
        # step; a repeated signal is forwarded again, which the ranks treat the same. A
        # signal before the launcher exists is acted on as soon as it does (_wait).
        if self.proc is not None:
            signal_pids(descendants(self.proc.pid), signal.SIGTERM)

    def _wait(self) -> int:
        if self.stop_requested_at is not None:  # stopped while the launcher was starting
            self._on_signal(signal.SIGTERM, None)
        while (code := self.proc.poll()) is None:
            self._tell_stall()
            if self._overdue():
                self._kill_tree()
            time.sleep(POLL_S)
        return code

    def _tell_stall(self) -> None:
        """Once stopped: ranks that wait on a silent peer are not saving, so say that."""
        if self.stop_requested_at is None or self.told_stall or not self.reports:
            return
        if stalled := waiting_on_peer(self.reports):
            _say(stalled)
            self.told_stall = True

    def _overdue(self) -> bool:
        if self.stop_requested_at is None or self.killed:
            return False
        return time.monotonic() - self.stop_requested_at > self.grace_s + KILL_MARGIN_S

    def _kill_tree(self) -> None:
        stalled = self.reports and waiting_on_peer(self.reports)
        _say(f"killing the ranks after the grace of {self.grace_s:.0f} s: {stalled}" if stalled
             else f"the ranks did not stop within the grace of {self.grace_s:.0f} s; killing "
             "them (raise launch.stop_grace if saving takes longer)")
        kill_tree(self.proc.pid)
        self.killed = True

    def _outcome(self, code: int, reported: int, finished: int = 0) -> int:
        if reported >= self.local_ranks and not self.killed:
            _say(f"all {reported} rank(s) saved a complete checkpoint and stopped: exit "
                 f"{RESUMABLE_EXIT_CODE} (resumable)")
            return RESUMABLE_EXIT_CODE
        if code == 0:
            return 0
        if finished >= self.local_ranks:
            said = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
            _say(f"all {finished} rank(s) had finished training (final model saved) before "
                 f"the launcher {said}: exit 0")
            return 0
        if reported:
            _say(f"only {reported} of {self.local_ranks} rank(s) stopped cleanly")
        if code < 0:  # the launcher itself died of a signal: the shell's convention
            return 128 - code
        return 1 if code == RESUMABLE_EXIT_CODE else code


def _count(reports: str, name: str) -> int:
    return len(list(Path(reports).glob(name.format(rank="*"))))


def _say(message: str) -> None:
    print(f"ft node: {message}", file=sys.stderr, flush=True)
