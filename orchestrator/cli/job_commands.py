"""`ft status`, `ft logs`, `ft cancel`, `ft list`: following the jobs `ft launch` submitted.

Registered onto the main app by `register(app)`; every import of the jobs machinery happens
inside a command so that `ft --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import EXAMPLE_BACKEND, examples

if TYPE_CHECKING:
    from orchestrator.backends.job_model import JobRecord
    from orchestrator.spec.load import Spec

JobArg = Annotated[str | None, typer.Argument(
    help="BACKEND:ID, an id, or a job name (newest of that name); default: the newest job.",
    show_default=False)]
RequiredJobArg = Annotated[str, typer.Argument(
    help="BACKEND:ID, an id, or a job name (newest of that name).", show_default=False)]


def status(job: JobArg = None) -> None:
    """Show a job's state, where its files are and how to reach its logs."""
    from orchestrator.jobs.report import status_text
    from orchestrator.jobs.store import find_record

    typer.echo(status_text(find_record(job)))


def logs(
    job: RequiredJobArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines "
                                         "until the job ends.")] = False,
) -> None:
    """Print a job's log, as its backend keeps it (its log files, or its tool's logs)."""
    from orchestrator.backends import get
    from orchestrator.jobs.store import find_record

    record = find_record(job)
    try:
        for line in get(record.backend).log_lines(record, follow):
            typer.echo(line)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def cancel(job: RequiredJobArg) -> None:
    """Stop a job through its backend's own cancel command."""
    from orchestrator.backends import get
    from orchestrator.jobs.report import query
    from orchestrator.jobs.store import find_record

    record = find_record(job)
    said = get(record.backend).cancel(record)
    if said:
        typer.echo(said)
    state = query([record])[record.ref]
    typer.echo(f"cancel requested for {record.ref} ({record.name}); now {state.label}")


def list_jobs(
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, metavar="N",
                                       help="Show this many of the newest jobs.")] = 20,
    backend: Annotated[str | None, typer.Option(help="Only this backend's jobs.")] = None,
) -> None:
    """The jobs ft launched, newest first, with their current state."""
    from orchestrator.jobs.report import jobs_table, query
    from orchestrator.jobs.store import load_records, state_path

    records = [r for r in load_records() if backend in (None, r.backend)][-limit:][::-1]
    if not records:
        typer.echo(f"no jobs launched yet (ft keeps them in {state_path()})")
        return
    typer.echo(jobs_table(records, query(records)))


def watch_launched(record: JobRecord, spec: Spec) -> int:
    """`ft launch --watch`: the exit code says whether the job succeeded."""
    from orchestrator.jobs.watch import watch

    training = spec.training
    return watch(record, total_steps=getattr(training, "max_steps", None),
                 logging_steps=getattr(training, "logging_steps", None))


def register(app: typer.Typer) -> None:
    job = f"{EXAMPLE_BACKEND}:4242"
    app.command(epilog=examples("ft status", f"ft status {job}"))(status)
    app.command(epilog=examples(f"ft logs {job}", "ft logs my-finetune -f"))(logs)
    app.command(epilog=examples(f"ft cancel {job}", "ft cancel my-finetune"))(cancel)
    app.command("list", epilog=examples(
        "ft list", f"ft list --backend {EXAMPLE_BACKEND} -n 5"))(list_jobs)
