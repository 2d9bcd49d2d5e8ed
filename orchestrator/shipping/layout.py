"""Where shipped things sit, the same on every backend, and what a render asks to ship.

In the job's directory: the spec at `.ft/<job>.yaml`, ft's wheel in `.ft/<job>/wheels/`,
the node installer at `.ft/<job>/install_ft.py`, and each file the spec points to at the
path the spec gives. A backend that copies files to its nodes gets them from a bundle
directory beside the rendered file (`<job>.ship/`, laid out like the job's directory); a
job that runs on a shared filesystem gets them written into its directory directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrator.shipping.job_files import JobFile


def job_prefix(job: str) -> str:
    return f".ft/{job}"


def wheels_in_job(job: str) -> str:
    return f"{job_prefix(job)}/wheels"


def installer_in_job(job: str) -> str:
    return f"{job_prefix(job)}/install_ft.py"


def bundle_name(job: str) -> str:
    """The bundle directory, relative to the rendered file's directory."""
    return f"{job}.ship"


@dataclass(frozen=True)
class ShipPlan:
    """What the submit step writes before the backend's tool runs (the render stays pure)."""

    job: str
    target: Literal["bundle", "job_dir"]  # beside the rendered file, or the job's own dir
    files: tuple[JobFile, ...]
    wheel: bool  # ft's wheel and its installer (launch.install.method: wheel)
    spec_text: str | None = None  # shipped as .ft/<job>.yaml (else the job writes it)
    spec_path: str | None = None
    job_dir: str | None = None  # the job's directory; None: where the submit runs
