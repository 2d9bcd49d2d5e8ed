"""One writer per `output_dir`: a lease file held by the running job.

Two runs on one output directory resume from each other's half-written checkpoints and
rotate each other's away (seen: 26 deletions, both runs "succeeded", the final checkpoint
never marked). So rank 0 of a job takes `<output_dir>/_ft-lease.json` before anything is
read from or written to the directory, keeps it fresh, and removes it when the run ends.

It has to work where checkpoints live on a cluster, on NFS or Lustre, where fcntl/flock
locks are not reliable across nodes, and it must not outlive a holder that died:

- taking it is one atomic hard link of a complete temporary file onto the lease name
  (link fails if the name exists, on NFS too: the classic NFS lock); storage without hard
  links (FUSE bucket mounts) gets an O_EXCL create instead;
- the holder renews it (the file's mtime) from a thread every TTL/4; a lease whose
  heartbeat is older than the TTL (FT_OUTPUT_LEASE_TTL_S, default 120 s) is stale;
- a holder on this very host (same hostname, boot and pid namespace) whose process is
  gone is stale at once, so a crashed or SIGKILLed run never makes the next one wait;
- a lease of the same scheduler job (trainer/torch_free/job_identity.py: the job id that
  `ft node` exports, kept when the job is requeued or retried) is its own previous
  attempt's, taken over at once;
- `--force` (FT_FORCE_LEASE=1, which `ft train --force` and `ft launch --force` set)
  takes any lease: for a holder the user knows is dead.

A stale lease is moved aside by rename (atomic: one contender wins) and checked to be the
one judged stale before it is deleted. The lease is never inside a checkpoint; the final
model's marker leaves it out, and its leading `_` keeps it out of transformers' Hub uploads
of output_dir (a holder's host and pid are nobody's business there).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from trainer.torch_free.errors import UserError
from trainer.torch_free.job_identity import job_identity
from trainer.torch_free.run_switches import FORCE_LEASE_ENV as FORCE_ENV

log = logging.getLogger("ft.lease")

LEASE_FILE = "_ft-lease.json"
TTL_ENV = "FT_OUTPUT_LEASE_TTL_S"
DEFAULT_TTL_S = 120.0
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}


def this_host() -> dict:
    """What tells this host (and pid namespace) apart from any other: a hostname alone
    repeats across containers, and a pid means something only inside its namespace."""
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pid_ns": _inode("/proc/self/ns/pid")}


def identity(env: Mapping[str, str], pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {**this_host(), "pid": pid, "pid_started": _start_ticks(pid),
            "job": job_identity(env), "since": time.time(), "token": secrets.token_hex(8)}


class OutputLease:
    """The lease on one output directory, taken by rank 0 of a job."""

    def __init__(self, output_dir: Path, env: Mapping[str, str] = os.environ) -> None:
        self.path = Path(output_dir) / LEASE_FILE
        self.env = env
        self.ttl = float(env.get(TTL_ENV) or DEFAULT_TTL_S)
        self.mine: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise a UserError naming the holder and the ways out."""
        me = identity(self.env)
        for _ in range(5):
            if self._writable_link(me):
                self.mine = me
                self._start_heartbeat()
                return
            holder, age = self._read_holder()
            if holder is None and age is None:
                continue  # released between our attempt and the read
            why = self._stale_reason(holder, age, me)
            if why is None:
                raise UserError(refusal(self.path.parent, holder, age, self.ttl))
            if self._move_aside(holder):
                log.warning("took over the lease on %s from %s: %s", self.path.parent,
                            describe(holder), why)
        raise UserError(f"could not take the lease on {self.path.parent}: other runs keep "
                        "taking it; start one run at a time")

    def release(self) -> None:
        """Remove the lease if it is still this run's (a --force may have taken it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.mine is not None and self._still_mine():
            self.path.unlink(missing_ok=True)
        self.mine = None

    def _writable_link(self, me: dict) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._link(me)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise  # ENOSPC included: trainer/checkpoint/disk_full.py says that one
            raise UserError(f"output_dir {self.path.parent} is not writable "
                            f"({exc.strerror}): point `output_dir` at storage this job "
                            "can write to") from None

    def _link(self, me: dict) -> bool:
        tmp = self.path.with_name(f".ft-lease.{me['token']}.tmp")
        with open(tmp, "w") as handle:
            json.dump(me, handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in _NO_HARD_LINKS:  # bucket mounts (FUSE): exclusive create instead
                return self._create_exclusive(me)
            return self._still_mine(me)  # NFS may report a link that did happen as failed
        finally:
            tmp.unlink(missing_ok=True)

    def _create_exclusive(self, me: dict) -> bool:
        """O_EXCL create, then the content: a reader may briefly see it empty (judged by its
        fresh heartbeat, so held)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read_holder(self) -> tuple[dict | None, float | None]:
        """(holder, seconds since its heartbeat); (None, None) when there is no lease."""
        try:
            age = time.time() - self.path.stat().st_mtime
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError):
            return {}, age  # unreadable: judged by its heartbeat alone
        return (holder if isinstance(holder, dict) else {}), age

    def _stale_reason(self, holder: dict, age: float, me: dict) -> str | None:
        if self.env.get(FORCE_ENV) == "1":
            return f"forced ({FORCE_ENV}=1, --force)"
        if holder.get("job") and holder.get("job") == me["job"]:
            return f"a previous attempt of this job ({me['job']})"
        if all(holder.get(key) == me[key] for key in ("host", "boot_id", "pid_ns")) and \
                not _alive(holder.get("pid"), holder.get("pid_started")):
            return f"its process (pid {holder.get('pid')} on this host) is gone"
        if age > self.ttl:
            return f"its last heartbeat was {age:.0f} s ago (TTL {self.ttl:.0f} s)"
        return None

    def _move_aside(self, holder: dict) -> bool:
        """Remove the stale lease; False when another run took or removed it first."""
        aside = self.path.with_name(f".ft-lease.stale-{secrets.token_hex(6)}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = {}
        if holder and moved.get("token") != holder.get("token"):
            # A run took the lease between our read and the rename: give it back.
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        return True

    def _still_mine(self, me: dict | None = None) -> bool:
        me = me or self.mine
        try:
            return json.loads(self.path.read_text()).get("token") == me["token"]
        except (OSError, ValueError, AttributeError):
            return False

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="ft-output-lease",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.ttl / 4, 0.5)
        while not self._stop.wait(interval):
            if not self._still_mine():
                log.error("the lease on %s was taken by another run (%s): this run is no "
                          "longer its only writer", self.path.parent,
                          describe(self._read_holder()[0] or {}))
                return
            try:
                os.utime(self.path)
            except OSError as exc:  # a storage hiccup; the next beat tries again
                log.warning("could not renew the lease on %s: %s", self.path.parent, exc)


def describe(holder: dict) -> str:
    """host, pid, job and start of a lease's holder, as far as it says."""
    if not holder:
        return "an unreadable lease"
    since = holder.get("since")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) \
        if isinstance(since, int | float) else "?"
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, job "
            f"{holder.get('job') or 'none (no backend job)'}, since {started}")


def refusal(output_dir: Path, holder: dict, age: float, ttl: float) -> str:
    return (f"output_dir {output_dir} is in use by another run ({describe(holder)}; last "
            f"heartbeat {age:.0f} s ago). Two runs writing one output_dir resume from and "
            f"delete each other's checkpoints. Wait for that run to end (a dead holder's "
            f"lease expires {ttl:.0f} s after its last heartbeat), use another output_dir, "
            "or, if that run is certainly dead, take the lease over with `ft train --force` "
            f"/ `ft launch ... --force` ({FORCE_ENV}=1).")


def _alive(pid: object, started: object) -> bool:
    """Whether the process that took the lease still runs (a reused pid or a zombie
    awaiting its parent does not count)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state on (the command name before it may hold spaces)."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split() if stat else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None
