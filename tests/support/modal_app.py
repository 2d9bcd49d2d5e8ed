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


def _secret_keys(secret) -> list[str]:
    """The names a Secret built from the local environment carries (its repr lists them)."""
    text = repr(secret)  # Secret.from_dict([NAME, ...]): names only, never values
    inner = text[text.index("[") + 1:text.rindex("]")]
    return [name.strip() for name in inner.split(",") if name.strip()]
