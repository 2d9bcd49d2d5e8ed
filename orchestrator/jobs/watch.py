"""`ft launch --watch`: follow a job's state and its training loss until it ends.

Prints each state change, one line per logged loss (with a progress bar), a live bar on a
terminal between them, and the log's last lines when the job does not succeed.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from orchestrator.backends import get
from orchestrator.backends.base import Backend
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.jobs.progress import Progress
from orchestrator.status_text import format_seconds
from trainer.torch_free.errors import UserError

TAIL_LINES = 25  # shown when the job fails
SETTLE_S = 120.0  # how long to wait for a final state after the log stream ends


class Printer:
    """Lines for any stream; on a terminal also a bar redrawn in place."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = out.isatty()
        self.bar_shown = False

    def line(self, text: str) -> None:
        if self.bar_shown:
            self.out.write("\r\033[K")
            self.bar_shown = False
        self.out.write(text + "\n")
        self.out.flush()

    def bar(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
            self.bar_shown = True


class Watcher:
    def __init__(self, record: JobRecord, total_steps: int | None = None,
                 logging_steps: int | None = None, out: TextIO | None = None,
                 poll_s: float = 5.0, sleep: Callable[[float], None] = time.sleep):
        self.record = record
        self.backend: Backend = get(record.backend)
        self.printer = Printer(out or sys.stdout)
        self.progress = Progress(total_steps, logging_steps)
        self.poll_s, self.sleep = poll_s, sleep
        self.last_label = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def run(self) -> int:
        """0 when the job succeeded, 1 otherwise, 130 when the user stopped watching."""
        try:
            status = self._until(lambda s: s.state != JobState.PENDING)
            if not status.state.final and status.raw != "gone":
                self._follow_log()
            status = self._until(lambda s: s.state.final or s.raw == "gone", SETTLE_S)
        except KeyboardInterrupt:
            self.printer.line(f"stopped watching; the job keeps running "
                              f"(`ft cancel {self.record.ref}` stops it)")
            return 130
        return self._report(status)

    def _status(self) -> JobStatus:
        status = self.backend.statuses([self.record])[self.record.ref]
        label = status.label + (f": {status.detail}" if status.detail else "")
        if label != self.last_label:
            self.printer.line(f"{self.record.ref} {label}")
            self.last_label = label
        return status

    def _until(self, done: Callable[[JobStatus], bool], limit_s: float | None = None):
        waited = 0.0
        while True:
            status = self._status()
            if done(status) or (limit_s is not None and waited >= limit_s):
                return status
            if status.state == JobState.PENDING:  # a person waits for the queue: show how long
                self.printer.bar(f"{self.record.ref} {status.label}, waiting "
                                 f"{format_seconds(waited)} (Ctrl-C stops watching, "
                                 "not the job)")
            self.sleep(self.poll_s)
            waited += self.poll_s

    def _follow_log(self) -> None:
        step = self.progress.step
        for line in self.backend.log_lines(self.record, follow=True):
            self.tail.append(line)
            metrics = self.progress.feed(line)
            if metrics is not None:
                self.printer.line(self.progress.summary(metrics))
            elif self.progress.step != step:
                self.printer.bar(self.progress.bar())
            step = self.progress.step

    def _report(self, status: JobStatus) -> int:
        if status.state == JobState.SUCCEEDED:
            losses = self.progress.history
            trend = f"; loss {losses[0][1]:.4g} -> {losses[-1][1]:.4g}" if losses else ""
            self.printer.line(f"{self.record.ref} finished{trend}")
            return 0
        if not self.tail:  # it ended before the log was followed
            try:
                self.tail.extend(self.backend.log_lines(self.record, follow=False))
            except UserError as exc:
                self.printer.line(f"(no log: {str(exc).splitlines()[0]})")
        if self.tail:
            self.printer.line(f"last {len(self.tail)} log lines:")
            for line in self.tail:
                self.printer.line(f"  {line}")
        self.printer.line(f"{self.record.ref} ended {status.label}; `ft logs "
                          f"{self.record.ref}` shows the whole log")
        return 1


def watch(record: JobRecord, total_steps: int | None = None, logging_steps: int | None = None,
          out: TextIO | None = None, poll_s: float = 5.0,
          sleep: Callable[[float], None] = time.sleep) -> int:
    return Watcher(record, total_steps, logging_steps, out, poll_s, sleep).run()
