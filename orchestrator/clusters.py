"""Cluster profiles: the interconnect a cluster has and the NCCL/RDMA settings it needs.

A profile is a small YAML file in clusters/ (or a path given in `launch.cluster`). Its env
is written into every rendered launch file, so reviewers see the fabric settings, and
`ft node` adds what it detects on the node without overriding anything set explicitly.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from orchestrator.backend_registry import declared_in_options
from orchestrator.package_data import data_dir
from trainer.torch_free.errors import UserError

# Applied on every cluster: a collective that times out ends the job (async error handling
# tears the process group down) instead of hanging it forever; the timeouts themselves come
# from the spec (`launch.timeouts`, set by ft node). No NCCL_DEBUG: ft node sends NCCL's log
# to a file per process and reports the transport from it (orchestrator/node/nccl_log_files.py),
# unless the job sets NCCL_DEBUG itself.
DEFAULT_ENV: dict[str, str] = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    "PYTHONUNBUFFERED": "1",
}

Fabric = Literal["infiniband", "roce", "efa", "tcp", "auto"]


class ClusterProfile(BaseModel):
    """What every backend reads from a profile; a backend adds keys of its own
    (PROFILE_OPTIONS in its options.py, composed by profile_model)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    fabric: Fabric = Field(description="Inter-node transport; `auto` detects it on the node.")
    env: dict[str, str] = Field(default_factory=dict, description="NCCL/RDMA variables.")
    expected_internode_busbw_gbs: float | None = Field(
        None, description="All-reduce bus bandwidth between two nodes that a healthy fabric "
        "reaches (GB/s); the pre-flight check compares against it.")

    def launch_env(self) -> dict[str, str]:
        """Defaults overlaid with the profile's own settings."""
        return {**DEFAULT_ENV, **self.env}


def profile_model() -> type[ClusterProfile]:
    """ClusterProfile plus every backend's own profile keys (from the registry)."""
    return _composed(tuple(declared_in_options("PROFILE_OPTIONS").values()))


@functools.cache
def _composed(extras: tuple[type[BaseModel], ...]) -> type[ClusterProfile]:
    fields: dict[str, Any] = {name: (info.annotation, info) for model in extras
                              for name, info in model.model_fields.items()}
    return create_model("ClusterProfile", __base__=ClusterProfile, __module__=__name__,
                        __doc__=ClusterProfile.__doc__, **fields)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in data_dir("clusters").glob("*.yaml"))


def is_profile_path(name_or_path: str) -> bool:
    """`launch.cluster` names a file (shipped with the job), not one of clusters/."""
    return name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file()


def load_profile(name_or_path: str) -> ClusterProfile:
    """A shipped profile by name, or a profile YAML by path."""
    if is_profile_path(name_or_path):
        path = Path(name_or_path)
    else:
        path = data_dir("clusters") / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"`launch.cluster`: no cluster profile {name_or_path!r}; use one of "
                        f"{', '.join(available_profiles())} or a path to a profile YAML")
    try:
        return profile_model().model_validate(yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValidationError) as exc:
        raise UserError(f"{path}: invalid cluster profile:\n{exc}") from None
