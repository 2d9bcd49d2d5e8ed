"""Submitting rendered files through the backend's own tool, and remembering the job.

Order matters: check the secrets and the tool (installed, configured) before writing
anything, ship what the nodes need (ft's wheel, the spec's files: orchestrator.shipping),
write the files, run the rendered submit argv (exactly what `--dry-run` prints)
through the process seam, and record the job only once the backend took it.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestrator.backends.base import Backend, Rendered
from orchestrator.backends.job_model import JobRecord
from orchestrator.backends.tool_output import failure_text
from orchestrator.jobs.store import add_record
from orchestrator.output_files import write_files
from orchestrator.shipping.bundle import ship
from orchestrator.spec.load import Spec
from orchestrator.status_text import utc_now_iso
from trainer.torch_free.errors import UserError


def missing_secrets(spec: Spec, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Listed secrets the submitting environment does not set: the backends read their
    values from here, and the job would fail on them at start."""
    return [name for name in spec.launch.secrets if not environ.get(name)]


def secrets_problem(spec: Spec, environ: Mapping[str, str] = os.environ) -> str | None:
    missing = missing_secrets(spec, environ)
    if not missing:
        return None
    exports = " ".join(f"{name}=..." for name in missing)
    return (f"{spec.source}: `launch.secrets` lists {', '.join(missing)}, not set in this "
            f"environment; the backend passes each secret's value from here. To fix: "
            f"`export {exports}` before `ft launch`, or remove the name from launch.secrets")


def submit(backend: Backend, rendered: Rendered, directory: Path, spec: Spec) -> JobRecord:
    """Submit and record the job; every failure is a UserError that says how to fix it."""
    problem = secrets_problem(spec)
    if problem:
        raise UserError(problem)
    backend.check_ready()
    for note in backend.cluster_notes(spec):
        print(f"warning: {note}", file=sys.stderr, flush=True)
    if rendered.ship is not None:
        ship(rendered.ship, directory, backend.ignore_file)
    write_files(directory, rendered.files)
    argv = rendered.submit_command(str(directory))
    result = backend.run_tool(argv)
    if result.returncode != 0:
        hint = backend.explain_failure(result)
        raise UserError(f"`{shlex.join(argv)}` failed (exit {result.returncode}):\n"
                        f"{failure_text(result)}" + (f"\nTo fix: {hint}." if hint else ""))
    workdir = Path.cwd()
    submitted = backend.parse_submit(result, rendered, workdir)
    record = JobRecord(
        backend=backend.name, job_id=submitted.job_id, name=spec.launch.name,
        spec=str(Path(spec.source).resolve()), spec_sha256=spec.sha256,
        rendered_dir=str(directory.resolve()), submitted_at=utc_now_iso(),
        workdir=str(workdir), log_files=submitted.log_files, extra=submitted.extra)
    add_record(record)
    return record
