"""What dstack mounts, and what a multi-node dstack task can share.

dstack 0.22.5 (dstack/_internal/core/models/volumes.py) has two kinds of mount point:
a network volume by `name` (`VolumeMountPoint`) and an instance volume (`InstanceMountPoint`,
written `/host/path:/container/path`: a path on the host). Its docs say a network volume
attaches to one instance at a time, so the nodes of a distributed task cannot share one; an
instance volume on a filesystem every host of the fleet mounts (Lustre, NFS, EFS, an SSH
fleet's shared storage) is what every node sees. ft renders `source` (a host path) as such an
instance volume and cannot see the hosts, so a multi-node render says the path must be shared.
A name with `${{ dstack.node_rank }}` in it is one network volume per node (the server
interpolates it per job: dstack/_internal/server/services/jobs/configurators/base.py
`interpolate_job_volumes`): fine for a cache, never a shared checkpoint directory.
"""

from __future__ import annotations

import re

from orchestrator.backends.storage import (
    BUCKET,
    emulated_output_problems,
    keep_to,
    mode_problems,
    output_holder,
    selector_problems,
    unshared_output,
    volumes_on,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from trainer.torch_free.errors import Problem

NAME = "dstack"
PER_NODE = re.compile(r"\$\{\{\s*dstack\.(node_rank|job_num)\s*\}\}")
FIX = ("On dstack, use an instance volume on a filesystem every host mounts (`launch.volumes: "
       "[{source: /mnt/fsx/checkpoints, path: /checkpoints}]`) and put `output_dir` under its "
       "path (e.g. /checkpoints/run1).")


def problems(spec: Spec) -> list[Problem]:
    found = selector_problems(spec) + mode_problems(spec, NAME, "dstack")
    nodes = spec.launch.nodes
    for mounted in volumes_on(spec, NAME):
        volume, key = mounted.volume, mounted.key
        if volume.source and "://" in volume.source:
            found.append(Problem(f"{key}.source", "dstack mounts network volumes by `name` "
                                 "or host paths (instance volumes), not object-store URLs; "
                                 "create a dstack volume and use `name`, give a host path"
                                 f"{keep_to(BUCKET, NAME)}"))
        if volume.source and "://" not in volume.source and not volume.source.startswith("/"):
            found.append(Problem(f"{key}.source", "a host path (dstack instance volume) must "
                                 "be absolute, e.g. /mnt/fsx/checkpoints"))
        if volume.name and nodes > 1 and not per_node(volume):
            found.append(Problem(f"{key}.name", (
                f"a dstack network volume attaches to one instance at a time, so the "
                f"{nodes} nodes of this task cannot all mount `{volume.name}`; for storage "
                f"every node shares use an instance volume on a filesystem every host mounts "
                f"(`source: /mnt/fsx/checkpoints` instead of `name`, same `path: "
                f"{volume.path}`), or run with `nodes: 1`")))
    found += _output_problems(spec)
    return located(spec, found)


def _output_problems(spec: Spec) -> list[Problem]:
    found, holder = output_holder(spec, NAME, relative_shared=False, fix=FIX)
    if holder is None:
        return found
    if per_node(holder.volume):
        return [unshared_output(spec, f"on {holder.key}, one network volume per node", FIX)]
    return []  # on an instance volume; a shared network volume's name is refused above


def per_node(volume) -> bool:
    """A network volume name dstack makes per node (`${{ dstack.node_rank }}`)."""
    return bool(volume.name and PER_NODE.search(volume.name))


def emulated_problems(spec: Spec) -> list[Problem]:
    return emulated_output_problems(spec, NAME, relative_shared=False, fix=FIX)


def notes(spec: Spec) -> list[str]:
    """An instance volume is shared only where the hosts share that path."""
    if spec.launch.nodes < 2:
        return []
    return [f"{m.key}: dstack mounts {m.volume.source} from each node's host; it must be a "
            f"filesystem every host of the fleet mounts (Lustre, NFS, EFS), or each node "
            f"keeps its own copy of {m.volume.path}"
            for m in volumes_on(spec, NAME) if m.volume.source]


def mounts(spec: Spec) -> list:
    """The volumes the task mounts (what the template renders)."""
    return [m.volume for m in volumes_on(spec, NAME)]
