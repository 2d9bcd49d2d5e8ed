"""Following output as it grows: a streamed command (`sky logs`, `dstack attach --logs`) or
log files on a shared filesystem (Slurm's --output/--error).

`run_cmd` (orchestrator.process) captures a finished command; following needs lines while the
command runs, so this is its streaming counterpart. Tests replace `STREAMER` the same way they
replace `orchestrator.process.RUNNER`.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from orchestrator.errors import UserError

# tqdm redraws its bar with carriage returns; each redraw is a line for our purposes.
_LINE_END = re.compile(r"\r\n|\r|\n")


def _popen_lines(argv: Sequence[str]) -> Iterator[str]:
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
