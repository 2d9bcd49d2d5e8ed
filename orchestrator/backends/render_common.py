"""Conversions every backend needs: env to export, sizes, durations (the GPU type:
gpu_limits.py)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from orchestrator.backends.launch_line import explicit_command
from orchestrator.backends.node_steps import train_argv
from orchestrator.clusters import ClusterProfile, load_profile
from orchestrator.shipping.job_files import JobFile
from orchestrator.spec.load import Spec
from orchestrator.templating import header_lines

_GB = {"MB": 1 / 1000, "GB": 1, "TB": 1000}


def job_env(spec: Spec, profile: ClusterProfile) -> dict[str, str]:
    """Fabric defaults, then the profile, then the user's own values (the user wins)."""
    return {**profile.launch_env(), **spec.launch.env}


def profile_for(spec: Spec) -> ClusterProfile:
    return load_profile(spec.launch.cluster)


def size_gb(size: str) -> int:
    match = re.match(r"^(\d+(?:\.\d+)?)\s*(MB|GB|TB)$", size)
    assert match, size  # validated by LaunchSpec
    return max(1, round(float(match.group(1)) * _GB[match.group(2)]))




def regenerate_command(spec: Spec, backend: str) -> str:
    argv = ["ft", "render", spec.source, "--backend", backend]
    for key, value in sorted(spec.overrides.items()):
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(argv)


def job_header(spec: Spec, backend: str, shipped: Sequence[JobFile]) -> list[str]:
    """The rendered file's header: ft, the spec and its hash, how to regenerate, and the
    hash of every file shipped with the job."""
    return header_lines(spec.source, spec.sha256, regenerate_command(spec, backend),
                        [(f.path, f.sha256) for f in shipped])


def shown_submit(submit_argv: Sequence[str]) -> str:
    """The submit command as the header shows it: run from the rendered files' directory."""
    return " ".join(part.replace("{dir}", ".") for part in submit_argv)


def explicit_launch(spec: Spec, backend: str) -> str:
    """The launcher line ft node will run, in the backend's shell variables (for reviewers)."""
    from orchestrator.backends import get

    launch = spec.launch
    per_node = launch.gpus_per_node or 1  # a CPU job runs one process per node
    return explicit_command(get(backend), launch.launcher, launch.master_port, train_argv(spec),
                            default_nproc=per_node, distributed=launch.nodes * per_node > 1)
