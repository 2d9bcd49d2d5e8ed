"""The submit step's half of shipping: write what a ShipPlan lists, where the rendered file
expects it. Nothing is half-written: a bundle is assembled in a temporary directory and
renamed into place; in a job directory on a shared filesystem only ft's own `.ft/<job>/`
is replaced."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.shipping import install_ft
from orchestrator.shipping.layout import (
    ShipPlan,
    bundle_name,
    installer_in_job,
    job_prefix,
    wheels_in_job,
)
from orchestrator.shipping.wheel import build_wheel
from trainer.torch_free.errors import UserError


@dataclass(frozen=True)
class IgnoreFile:
    """A backend's own ignore file, written into the bundle so that its tool uploads every
    file: tools skip what the user's repo ignores, which would drop ft's wheel from the job
    (GitHub's Python .gitignore lists `wheels/`; ft's default output dir is under .ft/)."""

    name: str
    text: str


KEEP_EVERYTHING = "# Written by ft: the job needs every file here.\n"


def ship(plan: ShipPlan, rendered_dir: Path, ignore_file: IgnoreFile | None = None) -> Path:
    """Write the plan's files (and into a bundle, the submitting backend's `ignore_file`);
    returns the directory the job's paths are relative to."""
    if plan.target == "bundle":
        return _write_bundle(plan, rendered_dir / bundle_name(plan.job), ignore_file)
    return _write_into_job_dir(plan, Path(plan.job_dir) if plan.job_dir else Path.cwd())


def describe_shipment(plan: ShipPlan, rendered_dir: Path) -> str:
    """One line per shipped thing, for `ft launch --dry-run`."""
    root = (rendered_dir / bundle_name(plan.job) if plan.target == "bundle"
            else Path(plan.job_dir or "."))
    lines = []
    if plan.spec_path:
        lines.append(f"{root / plan.spec_path}  (the spec)")
    if plan.wheel:
        lines.append(f"{root / wheels_in_job(plan.job)}/  (the wheel of this ft, built now)")
        lines.append(f"{root / installer_in_job(plan.job)}  (installs it once per node)")
    lines += [f"{root / f.path}  (`{f.field}`)" for f in plan.files]
    return "\n".join(lines) or "(nothing)"


def _write_bundle(plan: ShipPlan, final: Path, ignore_file: IgnoreFile | None) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        if ignore_file is not None:
            (scratch / ignore_file.name).write_text(ignore_file.text)
        if plan.spec_text is not None and plan.spec_path:
            _write(scratch / plan.spec_path, plan.spec_text)
        for job_file in plan.files:
            _copy(job_file.local, scratch / job_file.path)
        if plan.wheel:
            _write_ft(plan.job, scratch)
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return final


def _write_into_job_dir(plan: ShipPlan, job_dir: Path) -> Path:
    for job_file in plan.files:
        target = job_dir / job_file.path
        if Path(job_file.path).is_absolute() or _same_file(job_file.local, target):
            continue  # the nodes read it where it is (the shared filesystem)
        if target.exists() and target.read_bytes() != job_file.local.read_bytes():
            raise UserError(f"`{job_file.field}`: {target} exists in the job directory and "
                            f"differs from ./{job_file.path}; the job would read the other "
                            "one. Remove or update it, or run `ft launch` from "
                            f"{job_dir}")
        _copy(job_file.local, target)
    if plan.wheel:
        ours = job_dir / job_prefix(plan.job)
        ours.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{plan.job}.", dir=ours.parent))
        try:
            _write_ft(plan.job, scratch)
            shutil.rmtree(ours, ignore_errors=True)
            (scratch / job_prefix(plan.job)).rename(ours)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return job_dir


def _write_ft(job: str, root: Path) -> None:
    """ft's wheel and the node installer, at their job paths under `root`."""
    build_wheel(root / wheels_in_job(job))
    _copy(Path(install_ft.__file__), root / installer_in_job(job))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _write(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
