"""Submitting rendered files through the backend's own tool, and remembering the job.

Order matters: check the tool (installed, configured) before writing anything, write the
files, submit through the process seam, and record the job only once the backend took it.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.adapters import adapter, run_tool
from orchestrator.jobs.model import JobRecord
from orchestrator.jobs.store import add_record
from orchestrator.jobs.table import utc_now_iso
from orchestrator.jobs.toolout import failure_text
from orchestrator.output_files import write_files
from orchestrator.rendering import Rendered
from orchestrator.spec import Spec
from trainer.contract.errors import UserError


def submit(backend: str, rendered: Rendered, directory: Path, spec: Spec) -> JobRecord:
    """Submit and record the job; every failure is a UserError that says how to fix it."""
    tool = adapter(backend)
    tool.check_ready()
    write_files(directory, rendered.files)
    argv = tool.submit_argv(rendered.submit_command(str(directory)))
    result = run_tool(backend, argv)
    if result.returncode != 0:
        hint = tool.explain_failure(result)
        raise UserError(f"`{' '.join(argv)}` failed (exit {result.returncode}):\n"
                        f"{failure_text(result)}" + (f"\nTo fix: {hint}." if hint else ""))
    workdir = Path.cwd()
    submitted = tool.parse_submit(result, rendered, workdir)
    record = JobRecord(
        backend=backend, job_id=submitted.job_id, name=spec.launch.name,
        spec=str(Path(spec.source).resolve()), spec_sha256=spec.sha256,
        rendered_dir=str(directory.resolve()), submitted_at=utc_now_iso(),
        workdir=str(workdir), log_files=submitted.log_files, cluster=submitted.cluster,
        managed=submitted.managed)
    add_record(record)
    return record
