"""`ft launch`: render and submit a spec through its backend's own tool, or run its nodes
here (`--backend local`); `--watch` follows the submitted job. Nothing here imports torch."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import backends
from orchestrator.cli.options import (
    DEFAULT_EMULATION,
    EXAMPLE_BACKEND,
    AnyBackend,
    EmulateOpt,
    ForceOpt,
    GpusOpt,
    IsolateOpt,
    MasterPortOpt,
    NodesOpt,
    OverrideOpt,
    SpecArg,
    StageOpt,
    StrictOpt,
    err,
    examples,
    load_for_cli,
    render_checked,
    trainer_switches,
)
from orchestrator.spec.layout_report import layout_report
from orchestrator.spec.local_checks import require_local_launch
from orchestrator.spec.memory_fit import memory_report
from orchestrator.train_stack import require_train_stack


def launch(
    spec: SpecArg,
    backend: Annotated[AnyBackend, typer.Option(help="Where to run; `local` runs the nodes "
                                                "on this machine.")],
    dry_run: Annotated[bool, typer.Option(help="Print the files and the exact submit "
                                          "command; submit nothing.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to keep the "
                                                "rendered files.")] = None,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
    emulate: EmulateOpt = DEFAULT_EMULATION,
    isolate: IsolateOpt = None,
    master_port: MasterPortOpt = None,
    watch: Annotated[bool, typer.Option(help="Follow the job's state and training loss "
                                        "until it ends (exit 0 if it succeeded).")] = False,
    stage: StageOpt = None,
    force: ForceOpt = False,
    override: OverrideOpt = False,
    strict: StrictOpt = False,
) -> None:
    """Render and submit through the backend's own tool, or run the nodes here
    (`--backend local`)."""
    loaded = load_for_cli(spec, nodes, gpus_per_node, for_launch=True, master_port=master_port,
                          strict=strict)
    trained, layout = layout_report(loaded)  # the layout ft chooses, and inter-node bytes
    for line in [*layout, *memory_report(trained)]:  # refuses what cannot fit, before a queue
        err(line)
    # Into the job's environment like launch.env, so the rendered file shows them too.
    loaded.launch.env.update(trainer_switches(force, override))
    chosen = backends.get(backend.value)
    stages = [s.value for s in stage or []]
    if stages:
        backends.check_stages(chosen, stages)
    if not chosen.renders:
        require_train_stack("`ft launch --backend local` (it trains on this machine)")
        require_local_launch(loaded)
        from orchestrator.backends.local.emulation import check_storage, describe_local, run_local

        check_storage(loaded, emulate.value)
        if dry_run:  # what would start, as the other backends print what they would submit
            typer.echo(describe_local(loaded, emulate.value, Path.cwd(), isolate))
            return
        raise typer.Exit(run_local(loaded, emulate.value, Path.cwd(), isolate=isolate))
    submit_rendered(loaded, backend.value, stages, output, dry_run, watch)


def submit_rendered(loaded, backend: str, stages: list[str], output: Path | None,
                    dry_run: bool, watch: bool) -> None:
    """Render the loaded spec for `backend` and submit it (or print it: `dry_run`); `ft
    doctor --backend` submits through here too."""
    chosen = backends.get(backend)
    rendered = render_checked(loaded, backend)
    if stages:
        rendered = chosen.for_stages(rendered, stages)
    directory = output or Path(".ft") / "rendered" / loaded.launch.name
    if dry_run:
        _print_dry_run(loaded, rendered, directory)
        return
    from orchestrator.jobs.submit import submit

    record = submit(chosen, rendered, directory, loaded)
    typer.echo(f"submitted {record.ref} ({record.name})")
    err(f"follow it: ft status {record.ref} | ft logs {record.ref} -f | "
        f"ft cancel {record.ref}")
    if watch:
        from orchestrator.cli.job_commands import watch_launched

        raise typer.Exit(watch_launched(record, loaded))


def _print_dry_run(spec, rendered, directory: Path) -> None:
    """The files and the exact argv `ft launch` would run, plus a warning for every secret
    the submitting environment lacks (the real launch refuses to start without them)."""
    from orchestrator.jobs.submit import secrets_problem
    from orchestrator.shipping.bundle import describe_shipment

    for name, text in rendered.files.items():
        typer.echo(f"# ---- {directory / name} ----")
        typer.echo(text, nl=False)
    if rendered.ship is not None:
        typer.echo(f"# ---- shipped at submit ----\n{describe_shipment(rendered.ship, directory)}")
    typer.echo(f"# ---- command ----\n{shlex.join(rendered.submit_command(str(directory)))}")
    problem = secrets_problem(spec)
    if problem:
        err(f"warning: {problem}")


def register(app: typer.Typer) -> None:
    app.command(epilog=examples(
        *(backends.get(name).example for name in backends.names() if backends.get(name).example),
        f"ft launch spec.yaml --backend {EXAMPLE_BACKEND} --dry-run"))(launch)
