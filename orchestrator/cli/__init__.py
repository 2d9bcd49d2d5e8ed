"""The `ft` command line: typer commands only, one module per group. Heavy imports (torch,
transformers) happen only inside the commands that train; `ft --help`, `ft validate` and
`ft render` never load them."""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer

from orchestrator.cli import (
    job_commands,
    launch_command,
    node_commands,
    spec_commands,
    train_commands,
)
from orchestrator.cli.options import err
from trainer.torch_free.errors import UserError


def _print_version(value: bool) -> None:
    if value:
        from orchestrator import __version__

        typer.echo(__version__)
        raise typer.Exit()


def _global_options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print ft's version and exit.")] = False,
) -> None:
    """The app's own options (its help text is _summary's, from the registry)."""


def _summary() -> str:
    from orchestrator import backends

    where = ", ".join(backends.get(name).shown_name for name in backends.render_names())
    return f"One training spec in, a fine-tuned LLM out, on {where} or this machine."


def build_app() -> typer.Typer:
    """The app; its backend choices come from the registry (orchestrator.backends).

    Help is click's plain formatting (rich_markup_mode=None): Rich markup would eat the
    `[default: ...]` and `[train]` in help texts and label every flag `<bool>`."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                      pretty_exceptions_enable=False)
    app.callback(help=_summary())(_global_options)
    for group in (spec_commands, launch_command, node_commands, train_commands, job_commands):
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
    finally:
        # The interpreter's exit walks every object of torch's and transformers' thousands
        # of modules in repeated full collections: about 2 s of CPU at the end of each
        # process that trained (every rank, every restart), to free memory the process is
        # about to give back anyway. Frozen objects are skipped; atexit handlers still run.
        gc.freeze()
