"""Where each rank is, and a judge of the rank that holds the others up: one alive but hung in
its own code (a data loader that never returns, a callback or a forward in a loop) while the
others wait for it in a collective.

Its heartbeat goes on (the hang releases the GIL, or the heartbeat threads would stop and
peer_watch would name it), so only the collective timeout, 10 minutes by default, ended such
a job, with gloo's or NCCL's "timed out" and no rank named.

Steps alone cannot tell it: the others wait in a collective of the same step (the loss
gathered for the log, the batch's token count, the next forward's all-gather), so every rank
has begun the same step. The process group's collective sequence number can: every rank
issues the same collectives in the same order (DDP's and FSDP's from C++ included), so a rank
whose count stays below another's has not joined the collective that one is in. Each rank
stamps its count, the step it began, whether it is in a slow phase (start-up up to the end of
the first step, a checkpoint save: a rank may rightly be alone then) and the median time of
its recent steps into the rendezvous store with its heartbeat (trainer/distributed/
peer_watch.py carries it). The judge names a rank whose count has not moved, below another
rank's, for max(FACTOR x the median step time, `launch.timeouts.progress`), never while a rank
is in a slow phase, and only once a few steps have been timed. A slow but moving rank's count
moves; only a stuck one's does not.

The clock is this host's monotonic one; no time is compared across nodes (the median is a
duration each rank measured itself). Only the default group's count is read: a hang seen
only by a sub-group (FSDP's HYBRID_SHARD mesh) is left to the collective timeout.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

FACTOR = 5  # x the median step time: a slow step (an eval, a longer batch) is not a hang
TIMED_STEPS = 3  # steps timed before any judgement: the first ones compile, warm caches
_KEPT = 20  # recent step times kept for the median


class StepProgress:
    """This rank's own record; written by the training thread (process_group's
    CollectiveWindows, which knows the slow phases), read by the heartbeat one.
    `collectives`: the process group's collective count (raises once the group is gone)."""

    def __init__(self, collectives: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self.collectives = collectives
        self.seq = 0
        self.began = 0  # the step this rank is in (1-based); 0 before the first
        self.slow = True  # start-up is a slow phase until the first step ends
        self._began_at: float | None = None
        self._slow_since_begin = True
        self._times: deque[float] = deque(maxlen=_KEPT)

    def begin(self, step: int) -> None:
        now = time.monotonic()
        with self._lock:
            # A step that included a save (or the start-up) says nothing of a step's time.
            if self._began_at is not None and not self._slow_since_begin:
                self._times.append(now - self._began_at)
            self.began, self._began_at, self._slow_since_begin = step, now, self.slow

    def slow_phase(self, slow: bool) -> None:
        with self._lock:
            self.slow = slow
            self._slow_since_begin |= slow

    def stamp(self) -> str:
        """What goes into the store: `collectives,step,slow,median seconds` (no median until
        TIMED_STEPS steps were timed)."""
        if self.collectives is not None:
            # Once the group is gone (the end) its count cannot be read: keep the last.
            with contextlib.suppress(Exception):
                self.seq = int(self.collectives())
        with self._lock:
            median = statistics.median(self._times) if len(self._times) >= TIMED_STEPS else ""
            return f"{self.seq},{self.began},{int(self.slow)},{median}"


@dataclass(frozen=True)
class Stamp:
    seq: int
    began: int
    slow: bool
    median_s: float | None

    @classmethod
    def parse(cls, text: str | bytes) -> Stamp:
        if isinstance(text, bytes):
            text = text.decode()
        seq, began, slow, median = text.split(",")
        return cls(int(seq), int(began), slow == "1", float(median) if median else None)


@dataclass(frozen=True)
class Lag:
    rank: int
    stamp: Stamp  # where it is stuck
    lead: int  # the rank that is furthest on
    lead_stamp: Stamp
    for_s: float  # how long it has not moved while behind, by the judge's clock
    limit_s: float
    median_s: float


class LagJudge:
    """Fed every rank's stamp on each heartbeat; says which rank held the others up too long."""

    def __init__(self, floor_s: float):
        self.floor_s = floor_s
        self.stuck_since: dict[int, tuple[int, float]] = {}  # rank -> (its count, since when)

    def reset(self) -> None:
        self.stuck_since.clear()

    def observe(self, stamps: dict[int, Stamp], now: float) -> Lag | None:
        medians = [s.median_s for s in stamps.values() if s.median_s is not None]
        if not stamps or not medians or any(s.slow for s in stamps.values()):
            # Start-up, a save somewhere, or too few steps timed: nobody is late yet.
            self.reset()
            return None
        lead = max(stamps, key=lambda rank: stamps[rank].seq)
        for rank, stamp in stamps.items():
            seen = self.stuck_since.get(rank)
            if stamp.seq >= stamps[lead].seq:
                self.stuck_since.pop(rank, None)
            elif seen is None or seen[0] != stamp.seq:  # behind, but it moved: slow, not stuck
                self.stuck_since[rank] = (stamp.seq, now)
        if not self.stuck_since:
            return None
        median = statistics.median(medians)
        limit = max(FACTOR * median, self.floor_s)
        rank, (_, since) = min(self.stuck_since.items(), key=lambda item: item[1][1])
        if now - since < limit:
            return None
        return Lag(rank, stamps[rank], lead, stamps[lead], now - since, limit, median)
