"""The `launch:` section of the spec: where and how the job runs (read by the orchestrator
only; the trainer gets what it needs as variables from `ft node`).

What every backend shares is here; each backend's own block (`launch.<backend>:`) is the
options model its package declares (LAUNCH_OPTIONS in its options.py), added under its name by
`launch_model()` from the registry, so this module names no backend.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from orchestrator.backend_registry import declared_in_options
from trainer.torch_free.liveness import Timeouts
from trainer.torch_free.preflight_settings import Preflight

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The strictest run-name rule among the backends (a DNS label of at most 40 characters);
# one rule keeps every backend happy.
JOB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
DURATION = re.compile(r"^\d+[smhdw]$")
SIZE = re.compile(r"^\d+(\.\d+)?\s*(MB|GB|TB)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(duration: str) -> int:
    """A validated duration (`90s`, `5m`, `72h`, `1d`) in seconds."""
    return int(duration[:-1]) * _UNIT_SECONDS[duration[-1]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BackendOptions(_Strict):
    """Base of a backend's own `launch.<backend>:` block (unknown keys refused, like every
    other block); the backend package declares its subclass as LAUNCH_OPTIONS in its options.py."""


def single_line(value: str | None) -> str | None:
    """A field validator: values that land on one line of a rendered file."""
    if value is not None and ("\n" in value or "\r" in value or "\0" in value):
        raise ValueError("must be a single line")
    return value


def _duration_value(value: str | None) -> str | None:
    if value is not None and not DURATION.match(value):
        raise ValueError("use a number and a unit (s, m, h, d, w), e.g. 72h")
    return value


class Volume(_Strict):
    """Storage mounted into every node: a backend-managed network volume (`name`), or a
    `source` (an instance path, or an object-store URL where the backend mounts buckets). A
    multi-node job's `output_dir` must lie under the `path` of one every node shares
    (README, "Checkpoint storage")."""

    path: str = Field(description="Mount point inside the container, e.g. /checkpoints.")
    name: str | None = Field(None, description="Network volume name (a volume the backend "
                             "manages: a cloud, Kubernetes or serverless volume).")
    source: str | None = Field(None, description="Host path (an instance volume) or a bucket "
                               "URL (s3://, gs://, r2://, ...) where the backend mounts "
                               "buckets.")
    mode: Literal["mount", "mount_cached", "copy"] | None = Field(
        None, description="Bucket mount mode (default: mount_cached for the bucket "
        "that holds output_dir, else mount); refused on backends without one.")
    backends: list[str] = Field(default_factory=list, description="Mount only on these "
                                "backends (default: all), so one spec can name each "
                                "backend's own shared storage at the same path.")

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if (self.name is None) == (self.source is None):
            raise ValueError("give exactly one of `name` (a network volume) or `source`")
        if not self.path.startswith("/"):
            raise ValueError("`path` must be absolute, e.g. /checkpoints")
        return self

    _line = field_validator("path", "name", "source")(single_line)


class Retry(_Strict):
    """What happens when a node is preempted or the job fails."""

    on_preemption: bool = Field(True, description="Requeue / resubmit after a spot "
                                "interruption or a scheduler's preemption.")
    on_error: bool = Field(False, description="Also restart after a training failure.")
    max_restarts: int = Field(3, ge=0, description="Restarts before giving up.")
    duration: str | None = Field(None, description="Keep retrying for this long, e.g. 1d.")

    _duration = field_validator("duration")(_duration_value)


class Install(_Strict):
    """How ft reaches the container."""

    method: Literal["wheel", "image", "pip"] = Field(
        "wheel", description="wheel: `ft launch` ships the wheel of the ft that rendered the "
        "job and each node installs it once (offline; dependencies from the image); image: "
        "the image (or the cluster's environment) already has ft; pip: install `package` from an "
        "index.")
    package: str | None = Field(None, description="pip requirement (default: "
                                "ft-finetune[train]==<version>; the nodes need the [train] extra).")

    _line = field_validator("package")(single_line)


class LaunchSpec(_Strict):
    """Where the job runs. CLI flags (--nodes, --gpus-per-node) override these values."""

    name: str = Field("ft-job", description="Job name: lowercase letters, digits, dashes.")
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(1, ge=0, description="0 runs on CPU (local backend only).")
    gpu: str | None = Field(None, description="GPU type, optionally with memory: H100, "
                            "H100:80GB, A100:40GB.")
    cpus_per_node: int | None = Field(None, ge=1)
    memory: str | None = Field(None, description="Host memory per node, e.g. 512GB.")
    disk: str = Field("200GB", description="Disk per node.")
    shm_size: str = Field("64GB", description="/dev/shm size (NCCL and dataloaders need it).")
    image: str | None = Field(None, description="Container image (default: NGC's public "
                              "PyTorch image, into which the nodes install the shipped ft).")
    install: Install = Field(default_factory=Install)
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list, description="Names of secrets taken "
                               "from the submitting environment; values are never written.")
    volumes: list[Volume] = Field(default_factory=list)
    cluster: str = Field("auto", description="Cluster profile from clusters/ (infiniband, "
                         "roce, aws-efa, tcp, auto) or a path to a profile YAML.")
    spot: bool = False
    max_duration: str | None = Field(None, description="Stop after this long, e.g. 72h.")
    retry: Retry = Field(default_factory=Retry)
    stop_grace: str = Field("5m", description="After a stop signal (preemption, time limit, "
                            "ft cancel), how long every rank may take to save a complete "
                            "checkpoint before it is killed. A backend with a time limit sends its "
                            "warning this long plus a minute before it.")
    timeouts: Timeouts = Field(default_factory=Timeouts, description="Collective and peer "
                               "timeouts: a job that makes no progress ends, naming the node.")
    master_port: int = Field(29500, ge=1024, le=65534, description="Rendezvous port; the "
                             "pre-flight check uses the next one.")
    preflight: Preflight = Field(default_factory=Preflight, description="Before step 1, on "
                                 "the job's own nodes: GPU rates, links, software, storage and "
                                 "a checkpoint rehearsal (`false` turns it off).")
    launcher: Literal["torchrun", "accelerate"] = "torchrun"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME.match(value):
            raise ValueError("use 1-40 lowercase letters, digits and dashes, starting with a "
                             "letter (every backend accepts that)")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, values: dict) -> dict[str, str]:
        for key in values:
            if not ENV_NAME.match(key):
                raise ValueError(f"`{key}` is not a valid environment variable name")
        return {k: _bool_env(v) for k, v in values.items()}

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, values: list[str]) -> list[str]:
        for key in values:
            if not ENV_NAME.match(key):
                raise ValueError(f"`{key}` is not a valid environment variable name")
        return values

    _duration = field_validator("max_duration", "stop_grace")(_duration_value)

    @field_validator("disk", "shm_size", "memory")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not SIZE.match(value):
            raise ValueError("use a size like 200GB (units MB, GB, TB)")
        return value

    _line = field_validator("gpu", "image")(single_line)


def _bool_env(value: str | int | float | bool) -> str:
    """YAML `true` becomes the string "true", not Python's "True"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def launch_model(blocks: Mapping[str, type[BackendOptions]] | None = None) -> type[LaunchSpec]:
    """LaunchSpec plus one `launch.<backend>:` block per backend that declares options
    (default: those of the registry), each defaulting to its model's defaults."""
    if blocks is None:
        blocks = declared_in_options("LAUNCH_OPTIONS")
    return _composed(tuple(blocks.items()))


@functools.cache
def _composed(blocks: tuple[tuple[str, type[BackendOptions]], ...]) -> type[LaunchSpec]:
    fields: dict[str, Any] = {name: (model, Field(default_factory=model))
                              for name, model in blocks}
    return create_model("LaunchSpec", __base__=LaunchSpec, __module__=__name__,
                        __doc__=LaunchSpec.__doc__, **fields)
