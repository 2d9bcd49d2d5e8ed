"""The one seam through which ft runs external programs (sbatch, dstack, sky, scontrol...).

Tests replace `RUNNER` with a recording fake instead of patching subprocess everywhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
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
