"""The files a spec points to, which every node must read at the same path.

Paths in a spec are relative to the directory `ft launch` runs in (as `ft render` resolves
them); the job runs in its own directory where each file is shipped to the same relative
path, so the spec needs no rewriting. Shipped configs named by name (`cluster: infiniband`,
`deepspeed: zero2`) live inside ft's wheel and ship with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestrator.clusters import is_profile_path
from orchestrator.spec.load import Spec
from orchestrator.spec.yaml_source import format_path
from trainer.torch_free.chat_templates import jinja_file, jinja_settings
from trainer.torch_free.deepspeed_files import is_shipped
from trainer.torch_free.errors import Problem, SpecError


@dataclass(frozen=True)
class JobFile:
    field: str  # the spec key that names it, for messages
    path: str  # as written in the spec: where the job reads it, relative to its directory
    sha256: str

    @property
    def local(self) -> Path:
        """Where it is on the submitting machine (relative to the current directory)."""
        return Path(self.path)


def job_files(spec: Spec, absolute_ok: bool) -> list[JobFile]:
    """Every file the spec names, hashed; a missing or unshippable one is a SpecError.

    absolute_ok: the backend's nodes see this machine's absolute paths (a shared
    filesystem); backends that copy a bundle take files by relative path only."""
    problems: list[Problem] = []
    found = []
    for field, value in _referenced_paths(spec):
        problem = _path_problem(field, value, absolute_ok)
        if problem is None:
            try:
                digest = hashlib.sha256(Path(value).read_bytes()).hexdigest()
            except OSError as exc:
                problem = (f"{value}: cannot read it ({exc.strerror}); the job needs it on "
                           "every node. Run `ft launch` from the directory the path is "
                           "relative to, or fix the path")
        if problem:
            problems.append(Problem(field, problem))
        else:
            found.append(JobFile(field, value, digest))
    if problems:
        raise SpecError(problems, spec.source)
    return found


def _referenced_paths(spec: Spec) -> list[tuple[str, str]]:
    paths = []
    cluster = spec.launch.cluster
    if is_profile_path(cluster):
        paths.append(("launch.cluster", cluster))
    deepspeed = spec.training.deepspeed
    if deepspeed and not is_shipped(deepspeed):  # ft's own configs are on every node
        paths.append(("deepspeed", deepspeed))
    paths += [(format_path(key), value) for key, value in jinja_settings(spec.training)
              if jinja_file(value)]  # a chat template given as a file
    return paths


def _path_problem(field: str, value: str, absolute_ok: bool) -> str | None:
    path = PurePosixPath(value)
    if path.is_absolute():
        if absolute_ok:
            return None
        return (f"{value} is an absolute path on this machine, and this backend copies files "
                "to the nodes by relative path; give a path relative to the directory you "
                f"run `ft launch` in (e.g. {path.name} after copying it there)")
    if ".." in path.parts:
        return (f"{value} leaves the directory `ft launch` runs in, so it has no place in the "
                "job's directory; copy the file below it and point to the copy")
    return None
