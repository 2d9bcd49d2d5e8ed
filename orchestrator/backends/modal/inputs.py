"""The model and data a Modal job reads from a local path, and where its containers find them.

ft ships itself, the spec and the configs the spec points to; data and models stay where the
user keeps them, on Modal as on every backend (a dataset can be far larger than a launch
should upload). A Modal container sees its image and its Volumes only, and every stage runs
in the job's own Volume, so a relative path is read from that Volume (uploaded once with
`modal volume put`), an absolute one from a `launch.volumes` mount or from `launch.image`.
A path no container can read is refused before launch, not found missing hours later.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from orchestrator.spec.load import Spec
from trainer.torch_free.data_paths import looks_local
from trainer.torch_free.errors import Problem

WORKDIR = "/workspace"  # where the job's Volume is mounted: every stage's working directory
_MODEL_KEYS = ("base_model", "base_model_config", "tokenizer_config")


def job_volume(spec: Spec) -> str:
    return f"ft-{spec.launch.name}"


def local_inputs(spec: Spec) -> list[tuple[str, str]]:
    """(YAML path, value) of each model or dataset named by a local path, by the trainer's
    own rule (a model path starts with `.`, `/` or `~`; otherwise it is a hub id)."""
    training = spec.training
    found = [(key, value) for key in _MODEL_KEYS
             if (value := getattr(training, key)) and value.startswith((".", "/", "~"))]
    for group in ("datasets", "test_datasets"):
        found += [(f"{group}[{index}].path", dataset.path)
                  for index, dataset in enumerate(getattr(training, group) or [])
                  if looks_local(dataset.path)]
    return found


def input_problems(spec: Spec) -> list[Problem]:
    """Local paths no Modal container can read."""
    volume = job_volume(spec)
    fix = (f"use a path relative to the launch directory (read from the job's Volume "
           f"{volume}, uploaded with `modal volume put`) or one under a `launch.volumes` path")
    found = []
    for key, value in local_inputs(spec):
        path = PurePosixPath(value)
        if ".." in path.parts:
            found.append(Problem(key, f"{value} leaves the job's Volume {volume} (every "
                                 f"stage's working directory); {fix}"))
        elif _outside_volumes(spec, path) and spec.launch.image is None:
            found.append(Problem(key, f"{value} is on no Modal Volume and not in the default "
                                 "image, so no container can read it (ft ships no data or "
                                 f"models, on any backend); {fix}"))
    return found


def input_notes(spec: Spec) -> list[str]:
    """Where each readable local path must be put, with the command that puts it there."""
    volume = job_volume(spec)
    relative = sorted({PurePosixPath(value).as_posix() for _, value in local_inputs(spec)
                       if not value.startswith(("/", "~"))})
    notes = []
    if relative:
        puts = "; ".join(f"`modal volume put {volume} {path} {path}`" for path in relative)
        notes.append(f"ft ships no data or models (on any backend): the Modal stages read "
                     f"{', '.join(relative)} from the job's Volume {volume}. Upload them once "
                     f"(after `modal volume create {volume}` if it does not exist yet): {puts}")
    if spec.launch.image is not None:
        notes += [f"`{key}`: {value} is on no Modal Volume, so it must be in `launch.image` "
                  f"({spec.launch.image})" for key, value in local_inputs(spec)
                  if value.startswith(("/", "~")) and _outside_volumes(spec, PurePosixPath(value))]
    return notes


def _outside_volumes(spec: Spec, path: PurePosixPath) -> bool:
    """An absolute (or `~`: the container's home, not yours) path under no Volume mount."""
    if not path.is_absolute() and not str(path).startswith("~"):
        return False
    from orchestrator.backends.storage import volumes_on

    mounts = [PurePosixPath(WORKDIR), *(PurePosixPath(m.volume.path)
                                        for m in volumes_on(spec, "modal") if m.volume.name)]
    return not any(path.is_relative_to(mount) for mount in mounts)
