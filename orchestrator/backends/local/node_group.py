"""The emulated nodes as one job: signals to `ft launch` reach every node, a crashed node
stops the others, and the job's exit code follows the same rule as a cluster's.

A stop (SIGTERM, SIGINT/Ctrl-C, SIGUSR1 to `ft launch`) is caught from the moment
`ft launch` prepares the nodes; before they start it ends the launch (nothing to save yet,
exit 75), after it the same signal goes to each node's `ft node`, once that node catches it
(a node still starting would die of it, or drop it as pid 1), which has its ranks save and
exits RESUMABLE_EXIT_CODE; whatever still runs after the grace period (plus a margin for ft
node's own) is killed, tree and all. Every node also dies with the launcher itself
(PR_SET_PDEATHSIG), so even a SIGKILLed `ft launch` leaves no orphan.

Exit codes: 0 every node finished; 75 every node stopped cleanly (resumable); 78 the
pre-flight failed (every node has the same verdict and ends on its own); a node that
failed gives its code, one killed by a signal 128 + the signal (137 for SIGKILL, as a shell
says), never the raw negative status, and a line names that node.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from orchestrator.process import (
    SUPERVISED_SIGNALS,
    catches_signal,
    exit_status,
    kill_tree,
    signal_pids,
)
from trainer.torch_free.errors import UserError
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE
from trainer.torch_free.preflight_settings import PREFLIGHT_FAILED_EXIT_CODE

POLL_S = 0.2
MARGIN_S = 30  # beyond the ranks' grace: ft node's own time to notice and exit
# After a node crashed the others cannot save (a save is collective): they get the time
# to notice and exit, not the whole stop_grace.
AFTER_CRASH_S = 30


class NodeGroup:
    """Create it before the nodes start (it catches the stop signals), `add` each node, then
    `wait`; `close` gives the signals back."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.procs: list[subprocess.Popen] = []
        self.names: list[str] = []
        self.pending: list[list[int]] = []  # per node: signals it has yet to be sent
        self.stops: list[int] = []  # every stop signal received, in order
        self.deadline: float | None = None
        self.crash: int | None = None
        self.crashed = ""  # the name of the node that failed first
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in SUPERVISED_SIGNALS}

    @property
    def stop_requested(self) -> bool:
        return bool(self.stops)

    def add(self, proc: subprocess.Popen, name: str) -> None:
        """A started node; `name` says which it is (`node 1 (host node1)`)."""
        self.procs.append(proc)
        self.names.append(name)
        self.pending.append(list(self.stops))
        if self.stops:
            self._stop_within(self.grace_s + MARGIN_S)

    def close(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def wait(self) -> int:
        while self._running():
            self._deliver()
            self._check_crash()
            if self.deadline is not None and time.monotonic() > self.deadline:
                self._kill_all()
            time.sleep(POLL_S)
        return self._exit_code()

    def _running(self) -> bool:
        # Poll every node, not any(...): that stops at the first live node, so a later node
        # that exited was never polled (never reaped, its crash never seen) and the others
        # waited in a collective forever.
        return None in [proc.poll() for proc in self.procs]

    def _on_signal(self, signum: int, frame) -> None:
        self.stops.append(signum)
        for pending in self.pending:
            pending.append(signum)
        self._stop_within(self.grace_s + MARGIN_S)

    def _stop_within(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)

    def _deliver(self) -> None:
        """Each node's pending signals, in order, once its first process catches them."""
        for proc, pending in zip(self.procs, self.pending, strict=True):
            while pending and proc.poll() is None and catches_signal(proc.pid, pending[0]):
                signal_pids([proc.pid], pending.pop(0))

    def _check_crash(self) -> None:
        if self.crash is not None:
            return
        for proc, name in zip(self.procs, self.names, strict=True):
            code = proc.returncode
            if code not in (None, 0, RESUMABLE_EXIT_CODE):
                # The first crash wins; the others are stopped.
                self.crash, self.crashed = exit_status(code), name
                if self.crash == PREFLIGHT_FAILED_EXIT_CODE:
                    # Every node reached the same verdict and is ending the same way.
                    self._stop_within(AFTER_CRASH_S)
                    return
                self._say(f"{name} {describe_exit(code)}; stopping the other node(s)")
                if self.crash == UserError.exit_code:  # a node stopped on a user error
                    # Its message is said; the others could not save (a save is collective)
                    # and would only add tracebacks of a peer gone.
                    self._kill_all()
                    return
                self._stop_within(AFTER_CRASH_S)
                # At once, caught or not: the job has failed, a node still starting may die.
                signal_pids([p.pid for p in self.procs if p.poll() is None], signal.SIGTERM)
                return

    def _kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_tree(proc.pid)
        self.deadline = None

    def _exit_code(self) -> int:
        self._check_crash()
        if self.crash == PREFLIGHT_FAILED_EXIT_CODE:
            self._say(f"exit {self.crash}: the pre-flight failed (said above); training did "
                      "not start")
            return self.crash
        if self.crash is not None:
            self._say(f"exit {self.crash}: {self.crashed} failed first (its log above says "
                      "why)")
            return self.crash
        codes = [proc.returncode for proc in self.procs]
        return RESUMABLE_EXIT_CODE if RESUMABLE_EXIT_CODE in codes else 0

    @staticmethod
    def _say(message: str) -> None:
        print(f"ft launch: {message}", file=sys.stderr, flush=True)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name} (exit {exit_status(code)})"
    if code > 128 and code - 128 in signal.Signals._value2member_map_:
        return f"exited {code} (128 + {signal.Signals(code - 128).name})"
    return f"exited {code}"
