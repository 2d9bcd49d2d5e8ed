"""Whether the emulated nodes are isolated like a cluster's, and what each one gets.

Isolated (Linux, root, `ip`): every node has its own network namespace (eth0 on a private
bridge, network.py), hostname, /tmp, /dev/shm and pid numbers (sandbox.py). Storage follows
the spec and the emulated backend, as on a cluster: a `launch.volumes` path is shared
storage (the same host directory on every node: `source` when it is a host path, else
`path` itself; only the entries the emulated backend mounts), and so is the submit
directory (where `ft launch` runs) when the emulated backend's nodes share it
(Backend.shares_submit_dir: a cluster's shared filesystem, a job-wide volume); the output
and data-cache directories outside all of these are private to each node. Node 0's private
directories are the host's own (where you look after the job, as on a head node); node r's
live under `<workdir>/.ft/local/<job>/node<r>/` and outlast the launch, like a node's disk
across a requeue onto the same node.

Elsewhere the nodes share this host (loopback, one /tmp, one pid space), and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.backends.base import EmulatedHosts
from orchestrator.backends.local.network import NodeNetwork, create_network, remove_network
from orchestrator.backends.local.network import sweep_stale as sweep_stale_networks
from orchestrator.backends.storage import volumes_on
from orchestrator.spec.launch_schema import Volume
from orchestrator.spec.load import Spec


def unavailable_reason() -> str | None:
    """Why the nodes cannot be isolated here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return f"isolating nodes needs Linux namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return "isolating nodes needs root (network, mount and pid namespaces)"
    if shutil.which("ip") is None:
        return "isolating nodes needs `ip` (iproute2)"
    return None


@dataclass(frozen=True)
class Storage:
    """The directories each node binds: shared ones (source -> target, every node) and
    private ones (the host path node 0 uses; node r gets a copy under its own scratch)."""

    shared: tuple[tuple[str, str], ...]
    private: tuple[str, ...]
    scratch: Path  # node r's private directories live under scratch/node<r>

    def binds(self, rank: int) -> list[tuple[str, str]]:
        own = [(path if rank == 0 else str(self.node_copy(rank, path)), path)
               for path in self.private]
        # Outer directories first, so a nested one is bound inside its parent's bind.
        return sorted([*self.shared, *own], key=lambda pair: len(pair[1]))

    def node_copy(self, rank: int, path: str) -> Path:
        return self.scratch / f"node{rank}" / path.lstrip("/")


def plan_storage(spec: Spec, workdir: Path, submit_dir_shared: bool,
                 backend: str | None = None) -> Storage:
    """`backend`: the emulated one, which mounts only its `launch.volumes` entries."""
    def absolute(path: str) -> str:
        return os.path.realpath(workdir / path)

    shared = []
    if submit_dir_shared and absolute(".") != "/":
        shared.append((absolute("."), absolute(".")))
    for volume in emulated_volumes(spec, backend):
        local = volume.source if volume.source and volume.source.startswith("/") else None
        shared.append((absolute(local or volume.path), absolute(volume.path)))
    targets = [target for _, target in shared]
    private = [absolute(path) for path in (spec.training.output_dir,
                                           spec.training.dataset_prepared_path)
               if path and not any(_inside(absolute(path), target) for target in targets)]
    return Storage(tuple(shared), tuple(dict.fromkeys(private)),
                   workdir / ".ft" / "local" / spec.launch.name)


def emulated_volumes(spec: Spec, backend: str | None) -> list[Volume]:
    """The `launch.volumes` entries `backend`'s nodes mount (all when it is None or local)."""
    if backend in (None, "local"):
        return list(spec.launch.volumes)
    return [mounted.volume for mounted in volumes_on(spec, backend)]


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


@dataclass(frozen=True)
class IsolatedNodes:
    """One launch's isolated nodes: how to start node r, and what to tell the user."""

    network: NodeNetwork
    storage: Storage

    @property
    def hosts(self) -> EmulatedHosts:
        return EmulatedHosts(tuple(f"node{r}" for r in range(len(self.network.nodes))),
                             self.network.addresses)

    def wrap(self, rank: int, argv: list[str]) -> list[str]:
        """argv run as node `rank`: inside its network namespace, through the sandbox."""
        plan = {"hostname": self.hosts.names[rank],
                "hosts": list(zip(self.hosts.names, self.hosts.addresses, strict=True)),
                "binds": self.storage.binds(rank)}
        return ["ip", "netns", "exec", self.network.nodes[rank], sys.executable, "-m",
                "orchestrator.backends.local.sandbox", json.dumps(plan), *argv]

    def describe(self) -> str:
        count = len(self.network.nodes)
        shared = ", ".join(dict.fromkeys(t for _, t in self.storage.shared)) or "none"
        private = ", ".join(self.storage.private) or "none"
        return (f"ft launch: {count} isolated nodes node0..node{count - 1} (eth0 on "
                f"{self.network.addresses[0]}/24.., own /tmp, /dev/shm and pids; network "
                f"namespaces {self.network.nodes[0]}..); shared storage: "
                f"{shared}; private to each node: {private} (node 1.. under "
                f"{self.storage.scratch}/node<r>)")


@contextlib.contextmanager
def isolated_nodes(spec: Spec, workdir: Path, submit_dir_shared: bool,
                   backend: str | None = None) -> Iterator[IsolatedNodes]:
    """Build the nodes' network and directories; the network is removed on the way out,
    whatever the way out is (a SIGKILLed launcher's is swept by the next launch)."""
    sweep_stale_networks()
    storage = plan_storage(spec, workdir, submit_dir_shared, backend)
    for rank in range(spec.launch.nodes):
        for source, _ in storage.binds(rank):
            Path(source).mkdir(parents=True, exist_ok=True)
    network = create_network(spec.launch.nodes)
    try:
        yield IsolatedNodes(network, storage)
    finally:
        remove_network(network)
