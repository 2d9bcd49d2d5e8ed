"""The `ft` command line: typer commands only, one module per group. Heavy imports (torch,
transformers) happen only inside the commands that train; `ft --help`, `ft validate` and
`ft render` never load them."""

from __future__ import annotations

import sys

import typer

from orchestrator.cli import job_commands, node_commands, spec_commands, train_commands
from orchestrator.cli.options import err
from trainer.contract.errors import UserError


def build_app() -> typer.Typer:
    """The app; its backend choices come from the registry (orchestrator.backends)."""
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      pretty_exceptions_enable=False,
                      help="One training spec in, a fine-tuned LLM out, on dstack, SkyPilot, "
                           "Slurm, Modal or this machine.")
    for group in (spec_commands, node_commands, train_commands, job_commands):
        group.register(app)
    return app


app = build_app()


def main() -> None:
    """Console entry point: user errors print cleanly and exit 2, never a traceback."""
    try:
        app()
    except UserError as exc:
        err(f"error: {exc}")
        sys.exit(exc.exit_code)
