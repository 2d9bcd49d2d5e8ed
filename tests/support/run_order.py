"""Under pytest-xdist (`-n auto --dist loadfile`), the longest test files start first.

A file is one unit of work, given to whichever worker asks next, in the order of the
collected items. xdist's default (`--loadscope-reorder`) sorts the files by their number of
tests, most first: the few-test, minute-long files (real Slurm, stop signals, sharded
training) then started last, and one worker ran them alone for minutes at the end while the
other idled. Longest first, the long files run side by side from the start and the many
quick files fill the gaps after.

SECONDS is what each file took alone (`pytest --durations=0 tests/FILE`, one worker,
OMP_NUM_THREADS=1), to rank them, not to assert anything: a file missing here runs after
these, in collection order. Re-measure when a file gains or loses a long test.
"""

from __future__ import annotations

import pytest

SECONDS = {
    "test_slurm_real.py": 0,
}


def disable_xdist_reorder(config: pytest.Config) -> None:
    """Keep the order `longest_files_first` gives (xdist sorts by test count otherwise)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def longest_files_first(items: list[pytest.Item]) -> None:
    """Stable reorder: the files in SECONDS first, longest first; the rest keep their order."""
    items.sort(key=lambda item: -SECONDS.get(item.path.name, 0))
