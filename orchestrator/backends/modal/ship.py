"""How ft itself reaches a Modal container, until ft ships its own wheel with every job.

The rendered app adds ft's source packages (`Image.add_local_python_source`) plus the data
files ft node reads (cluster profiles, DeepSpeed configs), and pip-installs what the source
needs: ft's base dependencies and its [train] extra, read from the pyproject.toml of this
checkout or, for an installed ft, from its package metadata.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from orchestrator import DISTRIBUTION
from orchestrator.resources import data_dir

DEFAULT_IMAGE = "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-devel"  # public, CUDA, torch >= 2.6
_EXTRA = re.compile(r"""^\s*extra\s*==\s*["']train["']\s*$""")


def requirements() -> list[str]:
    """ft's base requirements and its [train] extra (the container trains)."""
    pyproject = data_dir("templates").parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text())["project"]
        return [*project["dependencies"], *project["optional-dependencies"]["train"]]
    found = []
    for requirement in importlib.metadata.requires(DISTRIBUTION) or []:
        name, _, marker = requirement.partition(";")
        if not marker.strip() or _EXTRA.match(marker):
            found.append(name.strip())
    return found
