"""Under pytest-xdist (`-n auto --dist loadfile`): one worker more than CPUs, and the
longest test files start first.

Much of the suite waits rather than computes: a real Slurm's polls and requeues, peer
timeouts, stop graces (test_slurm_real.py alone: 270 s of wall clock, 57 s of CPU). With one
worker per CPU, a CPU sat idle through those waits; the extra worker fills it.
PYTEST_XDIST_AUTO_NUM_WORKERS still sets the number outright.

A file is one unit of work, given to whichever worker asks next, in the order of the
collected items. xdist's default (`--loadscope-reorder`) sorts the files by their number of
tests, most first: the few-test, minute-long files (real Slurm, stop signals, sharded
training) then started last, and one worker ran them alone for minutes at the end while the
other idled. Longest first, the long files run side by side from the start and the many
quick files fill the gaps after.

SECONDS is what each file took alone (`pytest tests/FILE`), to rank them, not to assert
anything. A file missing here runs after these, in collection order: the others measured
took under 30 s; those needing a backend validator's venv were not measured. Re-measure
when a file gains or loses a long test.
"""

from __future__ import annotations

import os

import pytest

SECONDS = {  # measured one file at a time, the machine's load average 3-4
    "test_sharded_training.py": 302,
    "test_slurm_real.py": 270,
    "test_launch_signals.py": 142,
    "test_train_e2e.py": 125,
    "test_local_multinode.py": 124,
    "test_checkpoint_trust.py": 108,
    "test_hang_faults.py": 80,
    "test_doctor.py": 75,
    "test_slurm_exclude.py": 75,
    "test_local_isolation.py": 70,
    "test_stop_and_resume.py": 54,
    "test_modal_app.py": 51,
    "test_output_lease_runs.py": 46,
    "test_training_output.py": 43,
    "test_peer_watch.py": 38,
    "test_cli.py": 35,
    "test_peer_loss.py": 34,
    "test_data_cache_race.py": 34,
    "test_init_example.py": 33,
    "test_base_install.py": 31,
    "test_resume_guard.py": 29,
}


def auto_workers(config: pytest.Config) -> int | None:
    """`-n auto`: xdist's count (a worker per CPU) plus one; None leaves it to xdist."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    from xdist.plugin import pytest_xdist_auto_num_workers

    return pytest_xdist_auto_num_workers(config) + 1


def disable_xdist_reorder(config: pytest.Config) -> None:
    """Keep the order `longest_files_first` gives (xdist sorts by test count otherwise)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def longest_files_first(items: list[pytest.Item]) -> None:
    """Stable reorder: the files in SECONDS first, longest first; the rest keep their order."""
    items.sort(key=lambda item: -SECONDS.get(item.path.name, 0))
