"""Checkpoint storage on Slurm: no volumes, one shared filesystem by assumption.

A Slurm cluster's nodes mount the same home/project filesystem, and the job runs in the
submit directory (or `launch.slurm.workdir`) on it, so a relative `output_dir` (or one under
the workdir) is shared. Any other absolute path is shared only if the cluster mounts it on
every node, which ft cannot see from the render: it says so instead of refusing.
"""

from __future__ import annotations

import posixpath

from orchestrator.backends.storage import (
    mode_problems,
    output_dir,
    selector_problems,
    volumes_on,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from trainer.torch_free.errors import Problem

NAME = "slurm"


def problems(spec: Spec) -> list[Problem]:
    return located(spec, selector_problems(spec) +
                   mode_problems(spec, NAME, "Slurm (it mounts no volumes)"))


def notes(spec: Spec) -> list[str]:
    found = []
    mounted = volumes_on(spec, NAME)
    if mounted:
        keys = ", ".join(m.key for m in mounted)
        found.append(f"{keys}: Slurm mounts no volumes, so these are not rendered; its jobs "
                     "see the filesystems the cluster mounts on every node (the submit "
                     "directory is on one): give `output_dir` a path there, or keep the entries "
                     "to other backends with `backends: [...]`")
    out, workdir = output_dir(spec), spec.launch.slurm.workdir
    inside = not out.is_absolute() or (
        workdir is not None and out.is_relative_to(posixpath.normpath(workdir)))
    if spec.launch.nodes > 1 and not inside:
        found.append(f"`output_dir: {spec.training.output_dir}` is outside the job's directory"
                     f"{' (launch.slurm.workdir)' if workdir else ''}: it must be on a "
                     "filesystem every node mounts, or no checkpoint is marked complete (rank "
                     "0 cannot see the other nodes' shards) and a requeue starts at step 0")
    return found
