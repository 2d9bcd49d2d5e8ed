"""Submitting rendered files through the backend's own tool, via the one process seam."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.backends.registry import SUBMIT_TOOLS
from orchestrator.errors import UserError
from orchestrator.output_files import write_files
from orchestrator.process import run_cmd
from orchestrator.rendering import Rendered


def submit(backend: str, rendered: Rendered, directory: Path) -> str:
    """Write the files, run the submit command, return its output; failures are UserErrors."""
    tool, how = SUBMIT_TOOLS[backend]
    if shutil.which(tool) is None:
        raise UserError(f"`{tool}` is not on PATH, so the {backend} backend cannot submit. "
                        f"To fix: {how}. (`ft launch --dry-run` shows what would run.)")
    write_files(directory, rendered.files)
    argv = rendered.submit_command(str(directory))
    result = run_cmd(argv)
    if result.returncode != 0:
        raise UserError(f"`{' '.join(argv)}` failed (exit {result.returncode}):\n"
                        f"{(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()
