"""`ft node` owns its ranks: it starts the launcher, turns a stop signal into a clean save on
every rank within a grace period, and exits with one code the backends can act on.

Why not exec torchrun: on SIGTERM torchrun SIGKILLs its workers 30 s later (too short for a
sharded 70B save) and reports the trainer's "stopped, resumable" exit as its own exit 1, so
srun, the batch script and the cloud backends all saw a crash. Here the launcher runs with
the stop signals ignored (see orchestrator.process.spawn_supervised); ft node catches them
from its own start, passes each to the ranks itself (the same signal: a Ctrl-C is logged as
SIGINT), waits up to `launch.stop_grace`, and reads the ranks' reports:

    a stop before the launcher started     -> RESUMABLE_EXIT_CODE, nothing started
    every local rank reported a clean stop -> RESUMABLE_EXIT_CODE (75); the ranks exit 0
                                              after reporting, so torchrun prints no
                                              ChildFailedError for a clean stop
    the launcher exited 0                  -> 0
    every local rank reported it finished  -> 0 (the launcher failed after training was
                                              done: a late stop signal, its exit barrier)
    a second SIGINT (Ctrl-C)               -> 130: the ranks are stopped at once, unsaved
    a rank reported a user error           -> its code (2), the other ranks stopped at once;
                                              the rank printed the one message and exited 0,
                                              so torchrun adds no traceback
    the pre-flight failed                  -> 78 (PREFLIGHT_FAILED_EXIT_CODE), the same way:
                                              local rank 0 printed the verdict and reported
    a rank ended the job on a lost or hung -> PEER_LOST_EXIT_CODE (69), what it found said
    peer (trainer/distributed/peer_watch.py)
    anything else                          -> the launcher's code (1 if it said 0 or 75)

A rank starts with the stop signals ignored (inherited from the launcher) until `ft train`
catches them, so before signalling ft node leaves a mark (STOP_MARK) the rank reads then.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.node.peer_reports import peer_lost, waiting_on_peer
from orchestrator.process import (
    SUPERVISED_SIGNALS,
    catches_signal,
    descendants,
    exit_status,
    kill_tree,
    signal_pids,
    spawn_supervised,
)
from trainer.torch_free.exit_codes import (
    ABORT_EXIT_CODE,
    FINISHED_REPORT,
    RESUMABLE_EXIT_CODE,
    STOP_GRACE_ENV,
    STOP_MARK,
    STOP_REPORT,
    STOP_REPORT_DIR,
    USER_ERROR_REPORT,
)
from trainer.torch_free.liveness import PEER_LOST_EXIT_CODE
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE

POLL_S = 0.2
KILL_MARGIN_S = 15  # after the grace: time for torchrun to notice and exit


class Supervisor:
    """Create it first thing (it catches the stop signals from then on), then `run`."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.stop_requested_at: float | None = None
        self.killed = self.aborted = self.unstarted = self._ranks_seen = False
        self.sigints = self._alone_polls = 0
        self.proc = None  # the launcher, once started
        self.told_stall = False  # said once that the ranks wait on a silent peer
        self.reports = tempfile.mkdtemp(prefix="ft-stop-")
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in SUPERVISED_SIGNALS}

    @property
    def stop_requested(self) -> bool:
        return self.stop_requested_at is not None

    def stopped_before_start(self) -> int:
        """The exit code of a node stopped before its launcher started."""
        self._settle()
        _say(f"stopped before training started: nothing to save yet; exit "
             f"{RESUMABLE_EXIT_CODE} (resumable)")
        return RESUMABLE_EXIT_CODE

    def run(self, argv: list[str], env: dict[str, str], local_ranks: int) -> int:
        if self.stop_requested:
            return self.stopped_before_start()
        try:
            env = {**env, STOP_REPORT_DIR: self.reports, STOP_GRACE_ENV: str(self.grace_s),
                   # torch >= 2.8 honours these: torchrun then leaves SIGTERM/SIGINT to us,
                   # and gives ranks the whole grace when it tears a group down itself.
                   "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGHUP,SIGQUIT",
                   "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(int(self.grace_s))}
            self.proc = spawn_supervised(argv, env)
            code = self._wait()
            self._settle()
            return self._outcome(code, local_ranks, _count(self.reports, STOP_REPORT),
                                 _count(self.reports, FINISHED_REPORT))
        finally:
            self.close()

    def close(self) -> None:
        """Remove the report directory; where no outcome was decided (an error before the
        launcher started), the previous signal handlers are back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        shutil.rmtree(self.reports, ignore_errors=True)

    def _settle(self) -> None:
        """The outcome is decided. A late stop signal must not turn it into a death by
        signal: when another node exits 75 first, a scheduler that ends the whole step on one
        node's bad exit sends this node SIGTERM while it is about to exit 75 too, and a
        default handler here would make the step end 143 (a crash)."""
        for sig in SUPERVISED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        self.sigints += signum == signal.SIGINT
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            # Before any rank is signalled: a rank that has the signal still ignored finds
            # this mark once it catches the stop signals.
            (Path(self.reports) / STOP_MARK).write_text(name)
            _say(f"{name} received: asking the ranks to save and stop (grace "
                 f"{self.grace_s:.0f} s)")
        elif self.sigints > 1 and not self.aborted:
            self.aborted = True
            _say("second SIGINT: stopping the ranks now, without saving")
        # The same signal to every rank (never to the launcher): each saves at the end of
        # its step; a repeated SIGTERM is treated the same, a second SIGINT aborts. Only to
        # processes that catch it: a rank still starting up would die of it (or drop it);
        # it finds the mark instead once `ft train` catches the stop signals.
        if self.proc is not None:
            signal_pids([pid for pid in descendants(self.proc.pid)
                         if catches_signal(pid, signum)], signum)

    def _wait(self) -> int:
        while (code := self.proc.poll()) is None:
            self._tell_stall()
            if self._overdue():
                self._kill_tree()
            elif self._user_error() is not None and not self.killed:
                # A rank said its user error and exited 0: the others cannot go on without
                # it (and would only add tracebacks); stop them now.
                kill_tree(self.proc.pid)
                self.killed = True
            elif self._no_rank_started():
                # The launcher is still meeting the other nodes (a rendezvous that a node
                # stopped before its launcher started never completes). Nothing to save:
                # end it now.
                self.unstarted = True
                kill_tree(self.proc.pid)
            time.sleep(POLL_S)
        return code

    def _user_error(self) -> dict | None:
        """The first rank's user-error report, if one stopped on a user error."""
        for path in sorted(Path(self.reports).glob(USER_ERROR_REPORT.format(rank="*"))):
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):  # being written: read it on the next poll
                return None
        return None

    def _no_rank_started(self) -> bool:
        """Stopped, and twice in a row no rank process and no rank's report."""
        if not self.stop_requested or self.unstarted or self.killed or self._ranks_seen:
            return False
        self._ranks_seen = bool(descendants(self.proc.pid)) or \
            any(Path(self.reports).glob("*rank-*"))
        self._alone_polls = 0 if self._ranks_seen else self._alone_polls + 1
        return self._alone_polls >= 2

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
        if self.aborted:  # a second Ctrl-C: now
            return True
        return time.monotonic() - self.stop_requested_at > self.grace_s + KILL_MARGIN_S

    def _kill_tree(self) -> None:
        if self.aborted:
            kill_tree(self.proc.pid)
            self.killed = True
            return
        stalled = waiting_on_peer(self.reports)
        _say(f"killing the ranks after the grace of {self.grace_s:.0f} s: {stalled}" if stalled
             else f"the ranks did not stop within the grace of {self.grace_s:.0f} s; killing "
             "them (raise launch.stop_grace if saving takes longer)")
        kill_tree(self.proc.pid)
        self.killed = True

    def _outcome(self, code: int, local_ranks: int, reported: int, finished: int) -> int:
        if self.aborted:
            _say(f"stopped by a second SIGINT, nothing saved: exit {ABORT_EXIT_CODE}")
            return ABORT_EXIT_CODE
        if self.unstarted:
            return self.stopped_before_start()
        if (error := self._user_error()) is not None:
            code = int(error.get("exit_code", 2))
            if code == PREFLIGHT_FAILED_EXIT_CODE:  # every rank reached it; said once above
                _say(f"the pre-flight failed (said above); training did not start: exit {code}")
            else:
                _say(f"rank {error.get('rank')} stopped on the error it printed above: exit "
                     f"{code}")
            return code
        if reported >= local_ranks and not self.killed:
            what = "saved a complete checkpoint and stopped" if _saved(self.reports) else \
                "stopped before training started: nothing to save yet"
            _say(f"all {reported} rank(s) {what}: exit {RESUMABLE_EXIT_CODE} (resumable)")
            return RESUMABLE_EXIT_CODE
        if code == 0 and not reported:
            return 0
        if (lost := peer_lost(self.reports)) is not None:
            _say(f"{lost}: exit {PEER_LOST_EXIT_CODE}")
            return PEER_LOST_EXIT_CODE
        if finished >= local_ranks:
            said = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
            _say(f"all {finished} rank(s) had finished training (final model saved) before "
                 f"the launcher {said}: exit 0")
            return 0
        if reported:
            _say(f"only {reported} of {local_ranks} rank(s) stopped cleanly")
        if code < 0:  # the launcher itself died of a signal: the shell's convention
            return exit_status(code)
        return 1 if code in (0, RESUMABLE_EXIT_CODE) else code


def _count(reports: str, name: str) -> int:
    return len(list(Path(reports).glob(name.format(rank="*"))))


def _saved(reports: str) -> bool:
    """Whether the ranks' stop reports name a step (None: stopped before step 1)."""
    steps = [json.loads(path.read_text()).get("step")
             for path in Path(reports).glob(STOP_REPORT.format(rank="*"))]
    return any(step is not None for step in steps)


def _say(message: str) -> None:
    print(f"ft node: {message}", file=sys.stderr, flush=True)
