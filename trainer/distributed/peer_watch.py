"""Heartbeats among the ranks: a peer that stops answering is named, and the job ends.

A collective waiting on a dead node says nothing about who is missing (gloo: "Timed out
waiting 600000ms"), and it waits the whole collective timeout, which must be long enough for
a large save. So every rank stamps a counter in the rendezvous store torchrun already runs
on node 0 (MASTER_ADDR:MASTER_PORT) every few seconds, and reads everyone's. Two daemon
threads per rank, a few bytes each way: cheap on CPU and GPU jobs alike.

- `_beat` talks to the store (a TCPStore op to an unreachable host can block for long,
  which is why it gets a thread of its own);
- `_judge` looks at what `_beat` saw, by this host's monotonic clock (no clock is compared
  across nodes): a peer whose counter has not moved for `peer` seconds is named and this
  rank exits; so does a rank that cannot reach the store for that long (it names node 0).
  The first rank that ends the job leaves its finding in the store, so every node says why
  within a heartbeat. Only the first rank of each node reads every counter (the store's
  load grows with nodes x ranks, not ranks squared); the others stamp theirs and watch the
  store and that finding.

The beat also carries where this rank is (its collective count, its step:
trainer/distributed/step_progress.py), so the judges name a rank that is alive but holds the
others up in a collective it never joins, long before the collective timeout.

A rank that names a lost or hung peer leaves that node's rank in FT_NODE_EXITS
(trainer/distributed/bad_nodes.py), so that a requeue can exclude the node.

A rank that ends normally marks itself done (`finish`), so a rank still writing the final
model does not mistake it for dead. A rank whose own threads were frozen (a stop signal, a
long hold of the GIL) judges nobody on the tick it wakes up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from trainer.distributed.bad_nodes import record_bad_nodes
from trainer.distributed.step_progress import Lag, LagJudge, Stamp, StepProgress
from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free.exit_codes import STOP_REPORT_DIR
from trainer.torch_free.liveness import (
    PEER_LOST_EXIT_CODE,
    PEER_LOST_REPORT,
    WAITING_REPORT,
    heartbeat_period_s,
)

__all__ = ["DONE", "PEER_LOST_EXIT_CODE", "Member", "PeerWatch"]
# A rank that finished adds this to its counter: still a number, so a late increment (or a
# reader) never meets a value it cannot parse.
DONE = 10**15


@dataclass(frozen=True)
class Member:
    rank: int
    node_rank: int
    hostname: str
    address: str

    def node(self) -> str:
        return f"node {self.node_rank} ({self.hostname}, {self.address})"


class PeerWatch:
    def __init__(self, world: WorldRanks, peer_s: float, environ: Mapping[str, str],
                 progress: StepProgress | None = None, progress_s: float = 0):
        """`progress`: where this rank is, stamped with each beat; `progress_s`: the floor
        of the wait that names a rank holding the others up (0: no such judgement)."""
        self.world, self.peer_s, self.environ = world, peer_s, environ
        self.progress = progress
        self.lag = LagJudge(progress_s) if progress is not None and progress_s > 0 else None
        self.stamps: dict[int, Stamp] = {}  # rank -> where it was, as _beat last saw it
        self.period_s = heartbeat_period_s(peer_s)
        self.master = (environ.get("MASTER_ADDR", "127.0.0.1"),
                       int(environ.get("MASTER_PORT", "29500")))
        self.prefix = f"ft-liveness/{environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"
        self.report_dir = environ.get(STOP_REPORT_DIR)
        self.me = Member(world.rank, world.node_rank, socket.gethostname(),
                         _address_towards(*self.master))
        # Reading everyone's counter costs ranks x ranks values per period in all: the first
        # rank of each node reads them (and rank 1, so a frozen rank 0 of a one-node job is
        # found too); the others stamp theirs and learn of a loss through the "lost" key.
        self.judges_peers = world.local_rank == 0 or world.rank == 1
        self.members: dict[int, Member] = {}
        self.changed: dict[int, tuple[int, float]] = {}  # rank -> (counter, when it moved)
        self.last_ok = time.monotonic()
        self.lost: str | None = None  # what another rank reported before ending the job
        self.store: dist.TCPStore | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=target, name=f"ft-{target.__name__[1:]}",
                                          daemon=True) for target in (self._beat, self._judge)]
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        """This rank ends normally: the others stop expecting its heartbeat. The beat
        thread's last increment lands first (an increment of "done" is an error)."""
        self._stop.set()
        if self._threads:
            self._threads[0].join(2.0)
        if self.store is not None:
            _bounded(lambda: self.store.clone().add(self._key("beat", self.me.rank), DONE), 2.0)
        self._clear_waiting()

    def _write(self, key: str, value: str) -> None:
        """From a thread other than _beat: a client of its own (one TCPStore client must
        not be used by two threads at once), and never held up by an unreachable store."""
        if self.store is not None:
            _bounded(lambda: self.store.clone().set(key, value), 2.0)

    # -- the store side ------------------------------------------------------------------

    def _key(self, kind: str, rank: int | str) -> str:
        return f"{self.prefix}{kind}/{rank}"

    def _beat(self) -> None:
        ranks = range(self.world.world_size)
        beats = [self._key("beat", r) for r in ranks]
        infos = [self._key("info", r) for r in ranks]
        steps = [self._key("step", r) for r in ranks]
        try:
            self.store = dist.TCPStore(*self.master, is_master=False, wait_for_workers=False,
                                       timeout=timedelta(seconds=self.peer_s))
            self.store.set(self._key("info", self.me.rank), json.dumps(self.me.__dict__))
        except Exception as exc:  # noqa: BLE001 - training goes on without the watch
            _say(f"rank {self.me.rank}: no heartbeat store at {self.master[0]}:"
                 f"{self.master[1]} ({exc.__class__.__name__}); a dead peer is found by the "
                 "collective timeout alone")
            self._stop.set()
            return
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # unreachable: _judge sees last_ok age
                if self._stop.is_set():
                    break
                self.store.add(beats[self.me.rank], 1)
                if self.progress is not None:
                    self.store.set(steps[self.me.rank], self.progress.stamp())
                if not self.members and self.store.check(infos):
                    self.members = {r: Member(**json.loads(v)) for r, v in
                                    enumerate(self.store.multi_get(infos))}
                if self.judges_peers and self.store.check(beats):
                    self._saw(self.store.multi_get(beats))
                if self.lag is not None and self.judges_peers and self.store.check(steps):
                    self.stamps = {r: Stamp.parse(v) for r, v in
                                   enumerate(self.store.multi_get(steps))}
                if self.store.check([self._key("lost", "job")]):
                    self.lost = self.store.get(self._key("lost", "job")).decode()
                self.last_ok = time.monotonic()
            # Quick looks until every rank has said who it is (within seconds of the group's
            # start), so a node lost early is still named by host and address.
            self._stop.wait(self.period_s if self.members else 0.5)

    def _saw(self, counters: list[bytes]) -> None:
        now = time.monotonic()
        for rank, value in enumerate(map(int, counters)):
            if rank not in self.changed or self.changed[rank][0] != value:
                self.changed[rank] = (value, now)

    # -- the judging side ----------------------------------------------------------------

    def _judge(self) -> None:
        last_tick = time.monotonic()
        while not self._stop.wait(self.period_s):
            now = time.monotonic()
            if now - last_tick > max(3 * self.period_s, self.peer_s / 2):
                # This process was frozen itself: what it sees now is its own silence.
                self.last_ok = now
                self.changed = {r: (v, now) for r, (v, _) in self.changed.items()}
                if self.lag is not None:
                    self.lag.reset()
            last_tick = now
            if self.lost is not None:
                self.end(f"{self.lost} (found by another rank)")
            verdict, age = self._verdict(now)
            if verdict and age >= self.peer_s:
                # Only a rank that still reaches the store knows who is silent; one cut off
                # from it names node 0 but cannot tell whose link is down.
                reaches = "cannot reach" not in verdict
                self.end(f"{verdict} {age:.0f} s ago ({self._why(verdict)}): ending the "
                         "job", publish=reaches,
                         bad_nodes=self._silent_nodes(now) if reaches else [])
            elif verdict and age >= 2 * self.period_s:
                self._write_waiting(f"{verdict} {age:.0f} s ago")
            else:
                self._clear_waiting()
                if not verdict and (lag := self._lagging(now)) is not None:
                    self.end(self._describe_lag(lag), publish=True,
                             bad_nodes=[self._member(lag.rank).node_rank])

    def _lagging(self, now: float) -> Lag | None:
        """A rank the others wait for; not once a rank finished (the rest may be saving the
        final model) or before every rank stamped where it is."""
        if self.lag is None or len(self.stamps) < self.world.world_size or any(
                value >= DONE for value, _ in self.changed.values()):
            return None
        return self.lag.observe(self.stamps, now)

    def _describe_lag(self, lag: Lag) -> str:
        return (f"rank {lag.rank} on {self._member(lag.rank).node()} has not joined the "
                f"collective that rank {lag.lead} waits in for {lag.for_s:.0f} s (collective "
                f"#{lag.stamp.seq + 1}; it began step {lag.stamp.began}, rank {lag.lead} step "
                f"{lag.lead_stamp.began}; limit {lag.limit_s:.0f} s: 5 x the median step time "
                f"{lag.median_s:.1f} s, at least launch.timeouts.progress): alive but hung in "
                "its own code (data loading, a callback, a loop) while the others wait for it: "
                "ending the job")

    def _verdict(self, now: float) -> tuple[str | None, float]:
        """Who is silent (the longest silence first), and for how long."""
        unreachable = now - self.last_ok
        silent = {r: now - when for r, (value, when) in self.changed.items()
                  if r != self.me.rank and value < DONE}
        worst = max(silent.values(), default=0.0)
        # While the store does not answer, what this rank knows of the others is as old as
        # its last answer: the store (node 0, or the way to it) is what is missing.
        if unreachable >= 2 * self.period_s:
            master = self._member_of_node(0)
            return (f"{self.me.node()} cannot reach {master}, which holds the job's "
                    "rendezvous store: its last answer came", unreachable)
        if worst < 2 * self.period_s:
            return None, 0.0
        stale = sorted(r for r, age in silent.items() if age >= min(worst, self.peer_s))
        return self._describe(stale) + " stopped answering", worst

    def _describe(self, stale: list[int]) -> str:
        """Whole nodes when every rank of the node is silent, else the ranks."""
        parts = []
        for node in sorted({self._member(r).node_rank for r in stale}):
            ranks = [r for r in stale if self._member(r).node_rank == node]
            member = self._member(ranks[0])
            if len(ranks) >= self.world.local_world_size:
                parts.append(member.node())
            else:
                parts.append(f"rank(s) {', '.join(map(str, ranks))} on {member.node()}")
        return "; ".join(parts)

    def _why(self, verdict: str) -> str:
        if "cannot reach" in verdict:
            return "link down or node 0 dead"
        if "rank(s)" in verdict:
            return "process frozen or stuck; the rest of its node answers"
        return "link down, node dead or process frozen"

    def _member(self, rank: int) -> Member:
        return self.members.get(rank) or Member(rank, rank // max(
            self.world.local_world_size, 1), "?", "?")

    def _member_of_node(self, node_rank: int) -> str:
        for member in self.members.values():
            if member.node_rank == node_rank:
                return member.node()
        return f"node {node_rank} ({self.master[0]})"

    def _silent_nodes(self, now: float) -> list[int]:
        return sorted({self._member(r).node_rank for r, (value, when) in self.changed.items()
                       if r != self.me.rank and value < DONE and now - when >= self.peer_s})

    def end(self, finding: str, publish: bool = False,
            bad_nodes: list[int] | None = None) -> None:
        """Say it (once per node), leave it for ft node, the other ranks and the batch
        script (the node to exclude on a requeue), and exit."""
        message = f"ft: {finding}"
        if bad_nodes:
            record_bad_nodes(bad_nodes, finding, self.environ)
        if publish:
            self._write(self._key("lost", "job"), finding)
        self._write_report(PEER_LOST_REPORT, finding)
        if self.world.local_rank == 0:
            print(message, file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(PEER_LOST_EXIT_CODE)

    def _write_waiting(self, finding: str) -> None:
        self._write_report(WAITING_REPORT, finding)

    def _clear_waiting(self) -> None:
        if self.report_dir:
            with contextlib.suppress(OSError):
                (Path(self.report_dir) / WAITING_REPORT.format(rank=self.me.rank)).unlink()

    def _write_report(self, name: str, finding: str) -> None:
        if not self.report_dir:
            return  # a plain `ft train`: no ft node to tell
        path = Path(self.report_dir) / name.format(rank=self.me.rank)
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"rank": self.me.rank, "finding": finding,
                                       "peer_timeout_s": self.peer_s}))
            tmp.replace(path)


def _address_towards(host: str, port: int) -> str:
    """This node's address on the interface that reaches `host` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            return sock.getsockname()[0]
    except OSError:
        return "?"


def _bounded(action, timeout_s: float) -> None:
    """A store write that must not hold up an exit when the store is out of reach."""
    thread = threading.Thread(target=_quietly, args=(action,), daemon=True)
    thread.start()
    thread.join(timeout_s)


def _quietly(action) -> None:
    with contextlib.suppress(Exception):
        action()


def _say(message: str) -> None:
    print(f"ft: {message}", file=sys.stderr, flush=True)
