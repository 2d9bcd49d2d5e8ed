"""Reading a rendered Modal app back through the real `modal` package, offline.

`modal run FILE::REF` resolves its target with modal.cli.import_refs.import_and_filter; this
does the same, then reads each function's settings from modal's own Function objects: GPU,
volumes and secrets from the function spec modal keeps for `modal shell`, timeout, retries and
cluster size from the loader modal builds to create the function on the server.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

from modal._image import LATEST_IMAGE_BUILDER_VERSION
from modal._utils.async_utils import synchronizer
from modal.cli.import_refs import import_and_filter, parse_import_ref


@dataclass(frozen=True)
class FunctionSettings:
    gpu: str | None
    volumes: dict[str, str]  # mount path -> Volume name
    # Per Secret, the environment names it carries; modal adds `env=` as one more Secret.
    secret_names: list[list[str]]
    timeout: int
    retries: int
    cluster_size: int | None
    rdma: bool | None
    cpu: float | None
    memory: int | None


def resolve(app_file: Path, ref: str):
    """What `modal run APP_FILE::REF` would run (a Function or a LocalEntrypoint)."""
    runnable, _, _ = import_and_filter(parse_import_ref(f"{app_file}::{ref}"), base_cmd="modal run")
    assert runnable is not None, f"modal run cannot find {ref} in {app_file}"
    return runnable


def settings(function) -> FunctionSettings:
    raw = synchronizer._translate_in(function)
    closure = inspect.getclosurevars(raw._load).nonlocals
    spec = raw._spec
    volumes = {str(path): volume._name for path, volume in spec.volumes.items()}
    secrets = [sorted(_secret_keys(secret)) for secret in spec.secrets]
    retry = closure["retry_policy"]
    return FunctionSettings(
        gpu=spec.gpus, volumes=volumes, secret_names=secrets, timeout=closure["timeout"],
        retries=retry.retries if retry is not None else 0, cluster_size=closure["cluster_size"],
        rdma=closure["rdma"], cpu=spec.cpu, memory=spec.memory)


def image_steps(image) -> list[tuple]:
    """The image's build, base first, as modal holds it before building: Dockerfile lines
    (`FROM ...`, `ENV ...`, `RUN ...`, as modal's latest image builder writes them), and each
    local directory it adds: ("copy", local_dir, remote_path, files) baked into a layer
    (copy=True), ("mount", local_dir, remote_path, files) added when a container starts;
    `files` are the remote paths modal would upload (its ignore patterns applied)."""
    layers = []
    raw = synchronizer._translate_in(image)
    while raw is not None:
        closure = inspect.getclosurevars(raw._load).nonlocals
        if "mount" in closure:  # a copy=False layer: the base image plus a mount
            layers.append([_directory("mount", closure["mount"])])
            raw = closure["base_image"]
            continue
        commands = closure["dockerfile_function"](LATEST_IMAGE_BUILDER_VERSION).commands
        function = closure["context_mount_function"]
        context = function(LATEST_IMAGE_BUILDER_VERSION) if function else None
        layer = [line for line in commands if line != "FROM base" and not line.startswith("COPY")]
        if context is not None:
            layer.append(_directory("copy", context))
        layers.append(layer)
        raw = next(iter(closure["base_images"].values()), None)
    return [step for layer in reversed(layers) for step in layer]


def _directory(kind: str, mount) -> tuple:
    (entry,) = mount._entries
    files = sorted(str(remote) for _, remote in entry.get_files_to_upload())
    return kind, entry.local_dir, str(entry.remote_path), files


def _secret_keys(secret) -> list[str]:
    """The names a Secret built from the local environment carries (its repr lists them)."""
    text = repr(secret)  # Secret.from_dict([NAME, ...]): names only, never values
    inner = text[text.index("[") + 1:text.rindex("]")]
    return [name.strip() for name in inner.split(",") if name.strip()]
