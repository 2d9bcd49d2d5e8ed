"""How much a phase of the job raised this process's host memory (RSS), for its log line.

Linux keeps a peak-RSS counter (VmHWM) that writing "5" to /proc/self/clear_refs resets, so
a phase's own peak is measurable even after training peaked higher. Where that is not
allowed (or not Linux), getrusage's lifetime peak is the fallback: it shows only what the
phase added beyond every earlier peak, a lower bound.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakRss:
    """Started at construction; `growth_bytes()` is the peak RSS since then minus the RSS then."""

    def __init__(self) -> None:
        self.start_kib = _status_kib("VmRSS")
        self.reset = self.start_kib is not None and _reset_peak()
        self.lifetime_kib = _lifetime_peak_kib()

    def growth_bytes(self) -> int:
        peak = _status_kib("VmHWM") if self.reset else None
        if peak is not None and self.start_kib is not None:
            return max(peak - self.start_kib, 0) * 1024
        return max(_lifetime_peak_kib() - self.lifetime_kib, 0) * 1024


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])  # "VmRSS:   123456 kB"
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _lifetime_peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
