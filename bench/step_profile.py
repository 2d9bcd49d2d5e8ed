"""Where a training step's time goes: a torch.profiler window over a few optimizer steps,
installed through ft's FT_TRAINER_HOOKS (no change to ft itself):

    FT_TRAINER_HOOKS=step_profile:install FT_PROFILE_OUT=/tmp/prof PYTHONPATH=bench:...

Each rank writes `rank<N>.txt`: the window's wall time, how much of it the GPU was busy
(the union of its kernels' intervals: idle time is CPU overhead or a sync the GPU waited
on), and the kernels and CPU ops that took the most time. A profiled run is slower than a
plain one; its rates are not figures to report.
"""

from __future__ import annotations

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
                 table.table(sort_by="self_device_time_total", row_limit=30),
                 table.table(sort_by="self_cpu_time_total", row_limit=30)]
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.txt").write_text("\n".join(lines))


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def install(trainer) -> None:
    trainer.add_callback(_Window(Path(os.environ["FT_PROFILE_OUT"])))
