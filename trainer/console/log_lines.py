"""stderr for a log file: a progress bar's redraws become the lines a terminal would show.

A progress bar redraws its line with a carriage return. A terminal shows only the last
drawing; a log (a file, or a pipe that `ft node` and the backends prefix line by line) keeps
every drawing as a line of its own: a blank line where the bar starts, its 0% line, and its
100% line, sometimes twice. `LogLines` wraps stderr where it is not a terminal and keeps,
for each line, the text after its last carriage return, written when the line ends; a bar
that runs long also gets a line every `heartbeat` seconds, so a log shows it advancing.
Plain lines pass through unchanged and at once.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from typing import TextIO

_PARTS = re.compile(r"(\r|\n)")


class LogLines(io.TextIOBase):
    def __init__(self, raw: TextIO, heartbeat: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.raw, self.heartbeat, self.clock = raw, heartbeat, clock
        self.line = ""  # what a terminal shows on the current line so far
        self.redrawn = False  # the current line was drawn over with `\r`
        self.last_shown = clock()
        self.beat = ""  # the drawing last written as a heartbeat

    def write(self, text: str) -> int:
        for part in _PARTS.split(text):
            if part == "\n":
                self._end_line()
            elif part == "\r":
                self.line, self.redrawn = "", True
            elif part:
                self.line += part
                if not self.redrawn:  # plain text: no reason to hold it back
                    self._emit(self.line)
                    self.line = ""
        # A drawing arrives whole in one write (tqdm writes "\r" + bar at once).
        if self.redrawn and self.line.strip() and \
                self.clock() - self.last_shown >= self.heartbeat:
            self.beat = self.line.rstrip()
            self._emit(self.beat + "\n")
        return len(text)

    def _end_line(self) -> None:
        shown = self.line.rstrip() if self.redrawn else self.line
        # A bar cleared away leaves no blank line; one just shown as a heartbeat, no repeat.
        if not self.redrawn or (shown and shown != self.beat):
            self._emit(shown + "\n")
        self.line, self.redrawn, self.beat = "", False, ""

    def _emit(self, text: str) -> None:
        self.raw.write(text)
        self.raw.flush()
        self.last_shown = self.clock()

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # a bar still drawn when the process ends: keep its last state
        if self.line.strip():
            self._end_line()
        self.raw.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def encoding(self) -> str:
        return self.raw.encoding

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str):  # `buffer`, `errors`, ...: the wrapped stream's
        return getattr(self.raw, name)
