"""Checkpoint storage every node sees (README, "Checkpoint storage").

A multi-node job's sharded checkpoint holds files from every rank, and rank 0 marks it
complete only once it sees them all (trainer/checkpoint/save.py); a restart on fresh
machines resumes from what that directory holds. So a multi-node `output_dir` must lie on
storage every node mounts and that outlives the instances. Which storage that is, is each
backend's fact (its `storage_problems`); what they share is here: which `launch.volumes`
entries a backend mounts, which one holds a path, and the wording of the problems.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from orchestrator.spec.launch_schema import Volume
from trainer.torch_free.errors import Problem

if TYPE_CHECKING:
    from orchestrator.spec.load import Spec


@dataclass(frozen=True)
class Mounted:
    """A `launch.volumes` entry a backend mounts, with its index in the user's list."""

    index: int
    volume: Volume

    @property
    def key(self) -> str:
        return f"launch.volumes[{self.index}]"


def volumes_on(spec: Spec, backend: str) -> list[Mounted]:
    """The entries `backend` mounts: those without `backends`, or naming it."""
    return [Mounted(index, volume) for index, volume in enumerate(spec.launch.volumes)
            if not volume.backends or backend in volume.backends]


def selector_problems(spec: Spec) -> list[Problem]:
    """`backends:` entries that name no backend that mounts anything."""
    from orchestrator.backends import render_names

    known = render_names()
    return [Problem(f"launch.volumes[{index}].backends", f"no backend {name!r}; use "
                    f"{', '.join(known)}")
            for index, volume in enumerate(spec.launch.volumes)
            for name in volume.backends if name not in known]


def output_dir(spec: Spec) -> PurePosixPath:
    """`output_dir` as the trainer opens it: relative to the job's working directory."""
    return PurePosixPath(posixpath.normpath(spec.training.output_dir))


def holding(spec: Spec, backend: str, path: PurePosixPath) -> Mounted | None:
    """The innermost volume of `backend` whose mount point holds the absolute `path`."""
    if not path.is_absolute():
        return None
    holders = [m for m in volumes_on(spec, backend) if path.is_relative_to(m.volume.path)]
    return max(holders, key=lambda m: len(PurePosixPath(m.volume.path).parts), default=None)


# The kinds of `launch.volumes` entry a backend may mount (Backend.mounts).
NAMED = "a network volume by `name`"
HOST_PATH = "a host path `source`"
BUCKET = "an object-store URL `source`"
MOUNT_MODES = "a bucket `mode`"


def keep_to(kind: str, besides: str) -> str:
    """The hint for an entry `besides` cannot mount: ", or keep this entry to X with
    `backends: [x]`" naming the backends that mount `kind` ("" when none does)."""
    from orchestrator.backends import get, render_names

    able = [get(name) for name in render_names() if name != besides and kind in get(name).mounts]
    if not able:
        return ""
    return (f", or keep this entry to {' or '.join(b.shown_name for b in able)} with "
            f"`backends: [{', '.join(b.name for b in able)}]`")


def mode_problems(spec: Spec, backend: str, title: str) -> list[Problem]:
    """`mode` (a bucket mount mode): refused where it would be ignored."""
    return [Problem(f"{m.key}.mode", f"{title} has no mount modes, so `mode: "
                    f"{m.volume.mode}` cannot be honoured; remove it"
                    f"{keep_to(MOUNT_MODES, backend)}")
            for m in volumes_on(spec, backend) if m.volume.mode]


def unshared_output(spec: Spec, where: str, fix: str) -> Problem:
    """The one wording of "this multi-node checkpoint directory is not shared"."""
    return Problem("output_dir", (
        f"{spec.training.output_dir} is {where}, not on storage every node sees: with "
        f"{spec.launch.nodes} nodes each node would write only its own checkpoint shards "
        "(none is ever marked complete), and a restart on new machines starts at step 0. "
        f"{fix}"))


def output_holder(spec: Spec, backend: str, relative_shared: bool,
                  fix: str) -> tuple[list[Problem], Mounted | None]:
    """(problems, the volume holding `output_dir`) of a multi-node job on `backend`: a
    problem when `output_dir` is on none of its `launch.volumes` paths or, where its
    working directory is each node's own (not `relative_shared`), relative. No problem and
    no volume for one node, or a relative path in a shared working directory."""
    if spec.launch.nodes < 2:
        return [], None
    out = output_dir(spec)
    if not out.is_absolute():
        return ([], None) if relative_shared else ([unshared_output(spec, RELATIVE, fix)],
                                                   None)
    holder = holding(spec, backend, out)
    if holder is None:
        return [unshared_output(spec, NO_VOLUME, fix)], None
    return [], holder


def emulated_output_problems(spec: Spec, backend: str, relative_shared: bool,
                             fix: str) -> list[Problem]:
    """What `ft launch --backend local --emulate NAME` refuses, as NAME would: emulated
    nodes share each of NAME's volume paths as a host directory, whatever its kind, so only
    where `output_dir` lies counts."""
    return output_holder(spec, backend, relative_shared, fix)[0]


RELATIVE = "relative (it lands in the job's working directory, on each node's own disk)"
NO_VOLUME = "under no `launch.volumes` path"
