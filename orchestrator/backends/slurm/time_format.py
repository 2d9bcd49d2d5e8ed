"""Slurm's time formats: a spec duration as a time limit, and a time limit in seconds."""

from __future__ import annotations

from orchestrator.spec.launch_schema import duration_seconds


def slurm_time(duration: str) -> str:
    """72h -> 3-00:00:00 (Slurm's days-hours:minutes:seconds), rounded up to a minute."""
    minutes = -(-duration_seconds(duration) // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00"


def slurm_time_seconds(value: str) -> int | None:
    """Slurm's time formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS) in seconds;
    None for what Slurm reads as no limit (UNLIMITED, INFINITE, 0) or cannot be parsed."""
    days, _, clock = value.rpartition("-") if "-" in value else ("0", "", value)
    try:
        parts = [int(x) for x in clock.split(":")]
        day_count = int(days)
    except ValueError:
        return None
    if "-" in value:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, (minutes, seconds) = 0, (parts + [0])[:2]
    total = ((day_count * 24 + hours) * 60 + minutes) * 60 + seconds
    return total or None
