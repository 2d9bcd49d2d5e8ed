"""The emulated nodes as one job: signals to `ft launch` reach every node, a crashed node
stops the others, and the job's exit code follows the same rule as a cluster's.

A stop (SIGTERM, SIGINT/Ctrl-C, SIGUSR1 to `ft launch`) is forwarded to each node's `ft node`,
which has its ranks save and exits RESUMABLE_EXIT_CODE; whatever still runs after the grace
period (plus a margin for ft node's own) is killed, tree and all. Every node also dies with
the launcher itself (PR_SET_PDEATHSIG), so even a SIGKILLed `ft launch` leaves no orphan.
"""

from __future__ import annotations

import signal
import subprocess
import time

from orchestrator.process import SUPERVISED_SIGNALS, kill_tree, signal_pids
from trainer.contract.exit_codes import RESUMABLE_EXIT_CODE

POLL_S = 0.2
MARGIN_S = 30  # beyond the ranks' grace: ft node's own time to notice and exit
# After a node crashed the others cannot save (a save is collective): they get the time
# to notice and exit, not the whole stop_grace.
AFTER_CRASH_S = 30


class NodeGroup:
    def __init__(self, procs: list[subprocess.Popen], grace_s: float):
        self.procs, self.grace_s = procs, grace_s
        self.deadline: float | None = None
        self.crash: int | None = None

    def wait(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SUPERVISED_SIGNALS}
        try:
            while self._running():
                self._check_crash()
                if self.deadline is not None and time.monotonic() > self.deadline:
                    self._kill_all()
                time.sleep(POLL_S)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._exit_code()

    def _running(self) -> bool:
        # Poll every node, not any(...): that stops at the first live node, so a later node
        # that exited was never polled (never reaped, its crash never seen) and the others
        # waited in a collective forever.
        return None in [proc.poll() for proc in self.procs]

    def _on_signal(self, signum: int, frame) -> None:
        self._stop_all(self.grace_s + MARGIN_S)

    def _check_crash(self) -> None:
        if self.crash is not None:
            return
        for proc in self.procs:
            code = proc.returncode
            if code not in (None, 0, RESUMABLE_EXIT_CODE):
                self.crash = code  # first crash wins; the others are stopped
                self._stop_all(AFTER_CRASH_S)
                return

    def _stop_all(self, within_s: float) -> None:
        """SIGTERM each node's ft node (not its group: ft node supervises its own ranks),
        and kill what still runs after within_s."""
        deadline = time.monotonic() + within_s
        self.deadline = deadline if self.deadline is None else min(self.deadline, deadline)
        signal_pids([proc.pid for proc in self.procs if proc.poll() is None], signal.SIGTERM)

    def _kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_tree(proc.pid)
        self.deadline = None

    def _exit_code(self) -> int:
        codes = [proc.returncode for proc in self.procs]
        if self.crash is not None:
            return self.crash
        crashed = [code for code in codes if code not in (0, RESUMABLE_EXIT_CODE)]
        if crashed:
            return crashed[0] if crashed[0] > 0 else 128 - crashed[0]
        return RESUMABLE_EXIT_CODE if RESUMABLE_EXIT_CODE in codes else 0
