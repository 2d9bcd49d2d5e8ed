"""Where a training step's time goes: a torch.profiler window over a few optimizer steps,
installed through ft's FT_TRAINER_HOOKS (no change to ft itself):

    FT_TRAINER_HOOKS=step_profile:install FT_PROFILE_OUT=/tmp/prof PYTHONPATH=bench:...

Each rank writes `rank<N>.txt`: the window's wall time, how much of it the GPU was busy
(the union of its kernels' intervals: idle time is CPU overhead or a sync the GPU waited
on), and the kernels and CPU ops that took the most time. A profiled run is slower than a
plain one; its rates are not figures to report.
"""

from __future__ import annotations

import bisect
import os
import time
from pathlib import Path

from transformers import TrainerCallback

FIRST = int(os.environ.get("FT_PROFILE_FIRST_STEP", "10"))
STEPS = int(os.environ.get("FT_PROFILE_STEPS", "3"))


class _Window(TrainerCallback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.prof = None
        self.t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == FIRST and self.prof is None:
            import torch

            _sync()
            self.prof = torch.profiler.profile(activities=[
                torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
            self.prof.__enter__()
            self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.prof is not None and state.global_step == FIRST + STEPS:
            _sync()
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            self._write(wall, int(os.environ.get("RANK", "0")))
            self.prof = None

    def _write(self, wall: float, rank: int) -> None:
        events = self.prof.events()
        kernels = [(e.time_range.start, e.time_range.end) for e in events
                   if e.device_type.name == "CUDA" and e.time_range.end > e.time_range.start]
        busy = _union(kernels)
        span = (max(e for _, e in kernels) - min(s for s, _ in kernels)) if kernels else 0
        table = self.prof.key_averages()
        lines = [f"steps {FIRST}..{FIRST + STEPS}: wall {wall * 1e3:.1f} ms, "
                 f"GPU kernel span {span / 1e3:.1f} ms, busy {busy / 1e3:.1f} ms "
                 f"({100 * busy / max(span, 1):.1f}% of the span)",
                 table.table(sort_by="self_device_time_total", row_limit=45),
                 table.table(sort_by="self_cpu_time_total", row_limit=45),
                 *_idle_report(events, kernels), *_sync_report(events)]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.txt").write_text("\n".join(lines))


def _merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for start, stop in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return [(a, b) for a, b in out]


def _chain(event) -> str:
    """The CPU op and its parents, innermost first: what the host was doing."""
    names = []
    while event is not None and len(names) < 6:
        names.append(event.name[:48])
        event = event.cpu_parent
    return " < ".join(names)


def _idle_report(events, kernels) -> list[str]:
    """Where the GPU waited: each gap between kernels over 50 us, charged to the CPU op that
    ended it (the launch the GPU was waiting for) and that op's parents."""
    busy = _merged(kernels)
    launches = sorted((e.time_range.start, e) for e in events
                      if e.device_type.name == "CPU" and "Launch" in e.name)
    starts = [t for t, _ in launches]
    by_cause: dict[str, list[float]] = {}
    gaps = []
    for (_, end), (nxt, _) in zip(busy, busy[1:], strict=False):
        gap = nxt - end
        if gap < 50:
            continue
        gaps.append(gap)
        i = bisect.bisect_right(starts, nxt) - 1  # the last launch before the gap closed
        cause = _chain(launches[i][1].cpu_parent) if i >= 0 else "?"
        by_cause.setdefault(cause, []).append(gap)
    lines = [f"GPU idle gaps over 50 us: {len(gaps)}, {sum(gaps) / 1e3:.1f} ms in all; "
             "by the host op whose launch ended the gap:"]
    for cause, g in sorted(by_cause.items(), key=lambda kv: -sum(kv[1]))[:25]:
        lines.append(f"  {sum(g) / 1e3:8.2f} ms {len(g):5d} gaps  {cause}")
    return lines


def _sync_report(events) -> list[str]:
    """Every host-device synchronisation in the window, with the op that asked for it."""
    counts: dict[str, list[float]] = {}
    for e in events:
        if e.device_type.name == "CPU" and "Synchronize" in e.name:
            cause = _chain(e.cpu_parent)
            counts.setdefault(cause, []).append(e.time_range.end - e.time_range.start)
    lines = ["host syncs (count, host ms waiting) by caller:"]
    for cause, waits in sorted(counts.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {len(waits):4d} {sum(waits) / 1e3:8.2f} ms  {cause}")
    return lines


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _union(intervals: list[tuple[float, float]]) -> float:
    return sum(stop - start for start, stop in _merged(intervals))


def install(trainer) -> None:
    trainer.add_callback(_Window(Path(os.environ["FT_PROFILE_OUT"])))
