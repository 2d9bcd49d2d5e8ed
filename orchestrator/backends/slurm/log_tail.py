"""Following log files on a shared filesystem as they grow (Slurm's --output/--error).

Backends whose own tool streams the log go through the process seam instead
(`orchestrator.process.stream_cmd`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

# tqdm redraws its bar with carriage returns; each redraw is a line for our purposes.
_LINE_END = re.compile(r"\r\n|\r|\n")


class FileTail:
    """Reads what was appended to a file since the last call, in whole lines."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.partial = ""

    def read_lines(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        parts = _LINE_END.split(self.partial + data.decode("utf-8", "replace"))
        last = parts.pop()  # an unfinished line, or "" after a line end
        self.partial = "" if final else last
        return [*parts, last] if final and last else parts


def tail_files(paths: Sequence[Path], done: Callable[[], bool], poll_s: float = 1.0,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Lines appended to `paths` until `done()` says the job ended, then whatever is left."""
    tails = [FileTail(path) for path in paths]
    while True:
        finished = done()  # asked before reading, so nothing written before the end is lost
        for tail in tails:
            yield from tail.read_lines(final=finished)
        if finished:
            return
        sleep(poll_s)
