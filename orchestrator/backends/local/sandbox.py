"""The first process of an isolated emulated node, run inside the node's network namespace
(`ip netns exec NS python -m orchestrator.backends.local.sandbox PLAN ARGV...`).

It gives the node what a cluster node has of its own, then starts ARGV (`ft node`) as pid 1
of a fresh pid namespace, forwards stop signals to it and exits with its code:

- a hostname (`node<r>`) and an /etc/hosts naming every node, so the master is found by
  name as on a cluster;
- a private /tmp: an overlay whose lower layer is this host's /tmp (the node sees the files
  it was given, like an image) and whose writes stay on the node;
- a private /dev/shm;
- the directories of PLAN's `binds`: shared storage (the same host directory on every node)
  or a node's private output and data-cache directories;
- its own pid numbers: ft node is pid 1, so rank 0 gets the same pid on every node, as
  containers give it.

`ip netns exec` has already put us in a new mount namespace with /sys showing this
namespace's interfaces (fabric detection reads /sys/class/net).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

from orchestrator.process import (
    SUPERVISED_SIGNALS,
    catches_signal,
    exit_status,
    signal_pids,
    spawn_init,
)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWPID = 0x00020000, 0x04000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
POLL_S = 0.1
STAGE = Path("/dev/shm")  # covered by a fresh tmpfs once the mounts are made

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str | Path, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    def raw(text):
        return None if text is None else str(text).encode()

    _check(_libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)),
           f"mount {source or fstype} on {target}")


def private_tmp() -> Path:
    """Overlay /tmp (writes stay here) and return where this host's /tmp is still seen
    whole (binds of shared directories under /tmp must come from there, not the overlay)."""
    mount("tmpfs", STAGE, "tmpfs", MS_NOSUID | MS_NODEV)
    host_tmp, upper, work = STAGE / "host-tmp", STAGE / "upper", STAGE / "work"
    for path in (host_tmp, upper, work):
        path.mkdir()
    mount("/tmp", host_tmp, None, MS_BIND | MS_REC)
    mount("overlay", "/tmp", "overlay", 0,
          f"lowerdir={host_tmp},upperdir={upper},workdir={work}")
    return host_tmp


def bind(source: str, target: str, host_tmp: Path) -> None:
    """Bind a host directory at target (both absolute); a source under /tmp is taken from
    the host's /tmp, not from this node's overlay of it."""
    if source == "/tmp" or source.startswith("/tmp/"):
        source = str(host_tmp / os.path.relpath(source, "/tmp"))
    os.makedirs(target, exist_ok=True)
    mount(source, target, None, MS_BIND | MS_REC)


def hosts_file(hosts: list[tuple[str, str]]) -> str:
    """The node's /etc/hosts: every node by name, and by its IPv4-mapped IPv6 address too.
    torch's rendezvous store listens on IPv6 (dual stack) and asks for the name of each
    client, which it sees as ::ffff:10.210.0.2; glibc does not map that back to the IPv4
    line, asks DNS, which a node's namespace cannot reach, and c10d warns
    "The hostname of the client socket cannot be retrieved. err=-3" on every connection."""
    lines = ["127.0.0.1 localhost", "::ffff:127.0.0.1 localhost"]
    lines += [f"{address} {name}" for name, address in hosts]
    lines += [f"::ffff:{address} {name}" for name, address in hosts]
    return "\n".join(lines) + "\n"


def set_up(plan: dict) -> None:
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing made here reaches the host
    _check(_libc.sethostname(plan["hostname"].encode(), len(plan["hostname"])), "sethostname")
    host_tmp = private_tmp()
    for source, target in plan["binds"]:
        bind(source, target, host_tmp)
    hosts = STAGE / "hosts"
    hosts.write_text(hosts_file(plan["hosts"]))
    mount(str(hosts), "/etc/hosts", None, MS_BIND)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV)
    # The working directory was resolved before /tmp was overlaid: enter it again, so
    # relative paths go through this node's mounts, not straight to the host's disk.
    os.chdir(os.getcwd())


def mount_proc() -> None:
    """preexec of pid 1: a /proc of the new pid namespace (ft node reads its ranks there)."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def main(argv: list[str]) -> int:
    plan, command = json.loads(argv[0]), argv[1:]
    pending: list[int] = []
    for signum in SUPERVISED_SIGNALS:
        signal.signal(signum, lambda signum, frame: pending.append(signum))
    try:
        set_up(plan)
    except OSError as exc:
        print(f"ft launch: could not isolate {plan['hostname']}: {exc}; run with "
              "--no-isolate to share this host instead", file=sys.stderr, flush=True)
        return 1
    child = spawn_init(command, dict(os.environ), mount_proc)
    while (code := child.poll()) is None:
        # ft node is pid 1 of its namespace: the kernel drops a signal it has no handler
        # for, so a stop that comes while it is still starting waits until it catches it.
        while pending and catches_signal(1, pending[0]):  # pid 1 of the node: ft node
            signal_pids([child.pid], pending.pop(0))
        time.sleep(POLL_S)
    return exit_status(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
