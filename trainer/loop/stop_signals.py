"""The stop signals of a rank, caught from the first line of `ft train` on (torch-free).

A rank starts with SIGTERM/SIGINT/SIGUSR1 ignored (ft node starts torchrun that way, and an
ignored signal stays ignored across exec), so a stop that came before the handler was
installed would be lost: `ft node` therefore also leaves a mark (STOP_MARK) in its report
directory before it signals, and `requested` reads it. The handler only records the signal;
trainer.loop.graceful_stop acts on it where every rank can agree.

SIGINT is Ctrl-C: the first saves like SIGTERM, a second one (a person who will not wait)
stops at once without saving, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from trainer.torch_free.exit_codes import (
    ABORT_EXIT_CODE,
    STOP_MARK,
    STOP_REPORT_DIR,
    USER_ERROR_REPORT,
)

log = logging.getLogger("ft.preemption")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class StopSignals:
    """Which stop signal came (None: none yet). `phase` words what the handler says."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.phase = "starting"  # -> "training" -> "finishing"
        self._sigints = 0  # delivered to this process (not read from the mark)
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        self.received, self.phase, self._sigints = None, "starting", 0  # a fresh run
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def release(self) -> None:
        """Outside `ft train` a signal stops the process as usual again."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        if self.received is None:
            mark = _mark()
            if mark is not None:
                self.received = mark
                log.warning("%s came while this rank was starting (ft node's stop mark): "
                            "%s", mark, _what_happens(self.phase))
        return self.received is not None

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.phase == "finishing":
            log.warning("%s received after the last step: finishing the final save; the run "
                        "is complete", name)
            return
        if signum == signal.SIGINT:
            self._sigints += 1
            if self._sigints > 1:
                print("ft train: second SIGINT: stopping now, without saving",
                      file=sys.stderr, flush=True)
                os._exit(ABORT_EXIT_CODE)
        first = self.received is None
        self.received = name
        if first:
            again = " (Ctrl-C again stops at once, without saving)" \
                if signum == signal.SIGINT else ""
            log.warning("%s received: %s%s", name, _what_happens(self.phase), again)


def _what_happens(phase: str) -> str:
    if phase == "training":
        return "saving a checkpoint at the end of this step, then stopping"
    return "training has not started, so there is nothing to save yet; stopping"


def report_to_node(name: str, payload: dict) -> bool:
    """Leave this rank's report (`name`, a contract file name) for `ft node`; False when not
    under ft node (a plain `ft train`: the exit code says it all)."""
    directory = os.environ.get(STOP_REPORT_DIR)
    if not directory:
        return False
    rank = os.environ.get("RANK", "0")
    path = Path(directory) / name.format(rank=rank)
    path.write_text(json.dumps({"rank": int(rank), **payload}))
    return True


def report_user_error(message: str, exit_code: int) -> bool:
    """Under ft node: the rank has printed a user error; ft node ends the node with its code
    (torchrun would add a ChildFailedError traceback to a non-zero exit)."""
    return report_to_node(USER_ERROR_REPORT, {"exit_code": exit_code, "message": message})


def _mark() -> str | None:
    directory = os.environ.get(STOP_REPORT_DIR)
    if not directory:
        return None
    try:
        return (Path(directory) / STOP_MARK).read_text().strip() or "SIGTERM"
    except OSError:
        return None


# One per process: installed at the top of `ft train`, before its heavy imports.
STOPS = StopSignals()
