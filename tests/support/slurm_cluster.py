"""A real three-node Slurm (Debian's slurmctld + slurmd + munge) in a scratch directory.

Follows ../shared/slurm-local.md: nodes n1, n2 and n3 all live on 127.0.0.1, each with its own
slurmd. The jobs ask for two: the third is where a requeue that excludes a bad node goes.
KillWait is 20 s (Slurm's default is 30): long enough on a loaded 2-core machine for the tiny
job's ranks to save and exit after a `scancel`, and for the batch script to say so, before
the SIGKILL. A job in partition `urgent` preempts the jobs of `debug` (the default), which
Slurm requeues (PreemptMode=REQUEUE), as a cluster with a preemptible partition does.
Everything is private to the directory, so parallel runs and a system Slurm do not collide:
a munged on its own socket (slurm.conf `AuthInfo=socket=...`), free TCP ports for slurmctld
and each slurmd, and pid files that `stop()` uses to end exactly the daemons it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.process import pid_exists

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged")
NODES = ("n1", "n2", "n3")
NODE_RANGE = f"n[1-{len(NODES)}]"
CPUS_PER_NODE = 2
# The tiny example asks --mem=3G per node; 4000 MB fits it with room for one more small job.
REAL_MEMORY_MB = 4000

CONF = """\
ClusterName=ftlocal
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=20
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
{nodes}
PartitionName=debug Nodes={node_range} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES \
PriorityTier=1
PartitionName=urgent Nodes={node_range} MaxTime=INFINITE State=UP OverSubscribe=YES PriorityTier=2
"""
NODE_LINE = ("NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} "
             "CPUs={cpus} RealMemory={mem} State=UNKNOWN")


class SlurmUnavailable(Exception):
    """Slurm is not installed and cannot be installed here (the only reason to skip)."""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    pid_files: list[Path] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, ft) needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              env={**os.environ, **self.env})

    def logs(self) -> str:
        """The daemons' logs, for a failure message."""
        parts = []
        for path in sorted((self.root / "log").glob("*")) + [self.root / "munge/munged.log"]:
            if path.is_file():
                parts.append(f"==> {path.name} <==\n{path.read_text()[-3000:]}")
        return "\n".join(parts)

    def cancel_all(self, timeout_s: float = 30) -> None:
        """Cancel every job and wait for them to go: stopping slurmd alone would leave a
        running job's processes behind."""
        if not any(_alive(pid) for pid in map(_read_pid, self.pid_files) if pid):
            return
        self.run("scancel", "--user", str(os.getuid()))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-o", "%i").stdout.strip():
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs, then SIGTERM each daemon by its pid file (slurmds first) and
        SIGKILL what outlives 10 s."""
        self.cancel_all()
        pids = [pid for pid in map(_read_pid, self.pid_files) if pid]
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        for pid in self._leftover_job_processes():
            _signal(pid, signal.SIGKILL)

    def _leftover_job_processes(self) -> list[int]:
        """Processes of this cluster's jobs that outlived the daemons (a job step stuck in
        exit, an orphaned srun): everything started inside a job carries our SLURM_CONF."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                found.append(int(proc.name))
        return found


def ensure_installed() -> None:
    """Install the Debian packages when a program is missing; raise SlurmUnavailable if
    that is impossible (not root, no apt-get, or the install fails)."""
    missing = [name for name in PROGRAMS if _which(name) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and no root apt-get to "
                               f"install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(argv)}` failed: {result.stderr[-2000:]}")


def start(root: Path, timeout_s: float = 60) -> SlurmCluster:
    """Start munged, slurmctld and one slurmd per node; return once every node is idle."""
    ensure_installed()
    for sub in ("state", "spool", "log", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster = SlurmCluster(root, root / "slurm.conf")
    cluster.conf.write_text(_conf_text(root))
    try:
        _start_munged(cluster)
        _daemon(cluster, ["slurmctld", "-f", str(cluster.conf)], root / "slurmctld.pid")
        for name in NODES:
            _daemon(cluster, ["slurmd", "-f", str(cluster.conf), "-N", name],
                    root / f"slurmd-{name}.pid")
        _wait_idle(cluster, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _conf_text(root: Path) -> str:
    host = socket.gethostname().split(".")[0]
    ports = _free_ports(1 + len(NODES))
    nodes = "\n".join(NODE_LINE.format(name=name, host=host, port=port, cpus=CPUS_PER_NODE,
                                       mem=REAL_MEMORY_MB)
                      for name, port in zip(NODES, ports[1:], strict=True))
    return CONF.format(host=host, ctld_port=ports[0], root=root, nodes=nodes,
                       node_range=NODE_RANGE)


def _start_munged(cluster: SlurmCluster) -> None:
    munge = cluster.root / "munge"
    munge.chmod(0o755)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    _daemon(cluster, ["munged", "--force", f"--socket={munge}/munge.socket",
                      f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                      f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
            munge / "munged.pid")


def _daemon(cluster: SlurmCluster, argv: list[str], pid_file: Path) -> None:
    """Run a self-daemonising program and remember its pid file for stop()."""
    cluster.pid_files.insert(0, pid_file)  # stop in reverse start order
    argv = [_which(argv[0]) or argv[0], *argv[1:]]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **cluster.env})
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({result.returncode}): "
                           f"{result.stderr}\n{cluster.logs()}")
    deadline = time.monotonic() + 15
    while _read_pid(pid_file) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{argv[0]} wrote no pid file {pid_file}\n{cluster.logs()}")
        time.sleep(0.1)


def _wait_idle(cluster: SlurmCluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    states = ""
    while time.monotonic() < deadline:
        result = cluster.run("sinfo", "-h", "-N", "-o", "%N %t")
        states = result.stdout.strip()
        # One line per node and partition: each node counts once.
        idle = {line.split()[0] for line in states.splitlines() if line.split()[-1:] == ["idle"]}
        if len(idle) == len(NODES):
            return
        time.sleep(0.5)
    raise RuntimeError(f"nodes not idle after {timeout_s}s (sinfo: {states!r})\n"
                       f"{cluster.logs()}")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _which(name: str) -> str | None:
    # slurmctld, slurmd and munged live in sbin, which a non-login PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    if not pid_exists(pid):
        return False
    # A zombie child still answers kill(0); it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running three-node Slurm for the whole session, stopped by its pid files at the end.

    Skips only when Slurm is missing and cannot be installed; any other failure to start is a
    test error (a broken harness must not pass as a skip).
    """
    try:
        ensure_installed()
    except SlurmUnavailable as exc:
        pytest.skip(f"no real Slurm here: {exc}")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmd as root (SlurmdUser=root); run as root")
    cluster = start(tmp_path_factory.mktemp("slurm"))
    try:
        yield cluster
    finally:
        cluster.stop()
