"""`ft init / validate / render / launch / schema / fetch / version`: from a spec to a
submitted job. Nothing here imports torch."""

from __future__ import annotations

import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__, backends
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
    RenderBackend,
    SpecArg,
    StageOpt,
    err,
    examples,
    load_for_cli,
    trainer_switches,
)
from orchestrator.spec.local_checks import require_local_launch
from orchestrator.train_stack import require_train_stack
from trainer.contract.errors import UserError


def version() -> None:
    """Print ft's version."""
    typer.echo(__version__)


def init(
    path: Annotated[Path | None, typer.Argument(
        help="Where to write the spec [default: ft.yaml]; with --example, the directory "
             "[default: the example's name].", show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Job name [default: my-finetune].",
                                             show_default=False)] = None,
    base_model: Annotated[str | None, typer.Option(
        help="Model to fine-tune [default: meta-llama/Llama-3.1-8B-Instruct].",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    example: Annotated[str | None, typer.Option(help="Write a runnable shipped example "
                                                "instead (`tiny`: spec, data, and a tiny "
                                                "model built here; needs "
                                                "ft-finetune[train]).")] = None,
) -> None:
    """Write a commented starter spec, or a runnable example (--example tiny)."""
    from orchestrator.output_files import write_atomic
    from orchestrator.rendering import render_template

    if example is not None:
        from orchestrator.example_init import init_example

        if name is not None or base_model is not None:
            raise UserError("--name and --base-model shape the starter spec; an --example "
                            "comes as it is: drop them, or edit the example's spec after")
        for line in init_example(example, path or Path(example), force):
            typer.echo(line)
        return
    path = path or Path("ft.yaml")
    name = name or "my-finetune"
    base_model = base_model or "meta-llama/Llama-3.1-8B-Instruct"
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    text = render_template("starter-spec.yaml.j2", version=__version__, path=str(path),
                           name=name, base_model=base_model)
    write_atomic(path, text)
    load_for_cli(path)  # the starter must itself be valid
    typer.echo(f"wrote {path}; check it with `ft validate {path}`")


def validate(
    spec: SpecArg,
    backend: Annotated[AnyBackend | None, typer.Option(
        help="Check only what this backend's render/launch needs (default: every backend, "
             "ok when at least one is ready).")] = None,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
) -> None:
    """Check a spec: unknown keys, wrong types, impossible combinations (every problem at
    once, with its YAML path and line; exit 2), then what each backend's launch needs."""
    from orchestrator.spec.readiness import readiness, yaml_has_launch

    loaded = load_for_cli(spec, nodes, gpus_per_node)
    launch = loaded.launch
    names = [backend.value] if backend else backends.names()
    notes: dict[str, list[str]] = {}
    report = readiness(spec, names, {"nodes": nodes, "gpus_per_node": gpus_per_node}, notes)
    # A plain Axolotl config says nothing about where it runs: its launch needs are advice
    # until it (or the command line) names a launch.
    launch_named = bool(backend or nodes or gpus_per_node) \
        or yaml_has_launch(loaded.effective_text)
    unlaunchable = all(report.values()) and launch_named
    if unlaunchable:
        err(f"{spec}: the training keys are valid, but " + (
            f"`--backend {names[0]}` cannot launch it:" if backend else
            "no backend can launch it:"))
    else:
        typer.echo(f"{spec}: ok ({launch.nodes} node(s) x {launch.gpus_per_node} GPU(s), "
                   f"adapter={loaded.training.adapter or 'full'})")
    for name, problems in report.items():
        if not problems:
            typer.echo(f"  --backend {name}: ready")
            for note in notes.get(name, []):
                err(f"  --backend {name}: note: {note}")
        for problem in problems:
            err(f"  --backend {name}: not ready: {problem.format(str(spec))}")
    if unlaunchable:
        raise typer.Exit(2)


def _render(spec, backend: str):
    """What `ft validate --backend` calls ready renders: the backend's refusals first."""
    from trainer.contract.errors import SpecError

    registered = backends.get(backend)
    problems = registered.spec_problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    rendered = registered.render(spec)
    for note in rendered.notes:
        err(f"note: {note}")
    return rendered


def render(
    spec: SpecArg,
    backend: Annotated[RenderBackend, typer.Option(help="Which launch file to write.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Directory to write "
                                                "the files to (default: print them).")] = None,
    check: Annotated[bool, typer.Option(help="Fail if the files in -o DIR are stale.")]
    = False,
    ship: Annotated[bool, typer.Option(help="With -o: also write what the job ships (ft's "
                                       "wheel, the spec's files), so the file can be "
                                       "submitted with the backend's own tool.")] = False,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
) -> None:
    """Render the launch file(s) for a backend: deterministic, reviewable, checkable."""
    from orchestrator.output_files import stale_files, write_files

    rendered = _render(load_for_cli(spec, nodes, gpus_per_node, for_launch=True), backend.value)
    if check:
        if output is None:
            raise UserError("--check compares against files in a directory: pass -o DIR")
        stale = stale_files(output, rendered.files)
        if stale:
            err("stale generated files (re-run without --check to update):")
            for item in stale:
                err(f"  {item}")
            raise typer.Exit(1)
        typer.echo(f"up to date: {', '.join(rendered.files)}")
        return
    if output is None:
        if ship:
            raise UserError("--ship writes beside the rendered files: pass -o DIR")
        for text in rendered.files.values():
            typer.echo(text, nl=False)
        return
    if ship and rendered.ship is not None:
        from orchestrator.shipping.bundle import ship as write_shipment

        typer.echo(f"wrote {write_shipment(rendered.ship, output)} (what the job ships)")
    for path in write_files(output, rendered.files):
        typer.echo(f"wrote {path}")


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
) -> None:
    """Render and submit through the backend's own tool, or run the nodes here
    (`--backend local`)."""
    loaded = load_for_cli(spec, nodes, gpus_per_node, for_launch=True, master_port=master_port)
    # Into the job's environment like launch.env, so the rendered file shows them too.
    loaded.launch.env.update(trainer_switches(force, override))
    chosen = backends.get(backend.value)
    stages = [s.value for s in stage or []]
    if stages:
        chosen.check_stages(stages)
    if not chosen.renders:
        require_train_stack("`ft launch --backend local` (it trains on this machine)")
        require_local_launch(loaded)
        from orchestrator.backends.local.emulation import check_storage, describe_local, run_local

        check_storage(loaded, emulate.value)
        if dry_run:  # what would start, as the other backends print what they would submit
            typer.echo(describe_local(loaded, emulate.value, Path.cwd(), isolate))
            return
        raise typer.Exit(run_local(loaded, emulate.value, Path.cwd(), isolate=isolate))
    rendered = _render(loaded, backend.value)
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


def schema() -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    from orchestrator.spec.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, sort_keys=True))


class Fetchable(StrEnum):
    deepspeed_configs = "deepspeed-configs"


def fetch(
    what: Annotated[Fetchable, typer.Argument(help="What to copy out of ft.")],
    to: Annotated[Path, typer.Option(help="Destination directory.")] = Path("deepspeed_configs"),
) -> None:
    """Copy ft's shipped files out for editing: the DeepSpeed ZeRO configs (zero1, zero2,
    zero3, zero3_offload, zero3_offload_params), then point `deepspeed:` at your copy."""
    from trainer.contract.deepspeed_files import fetch as fetch_configs

    written = fetch_configs(to)
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo(f"{to}: every config is already there; nothing overwritten")


def register(app: typer.Typer) -> None:
    render_example = backends.render_names()[-1]
    app.command(epilog=examples("ft version"))(version)
    app.command(epilog=examples("ft init llama.yaml --name llama-lora "
                                "--base-model meta-llama/Llama-3.1-8B",
                                "ft init --example tiny my-tiny"))(init)
    app.command(epilog=examples("ft validate examples/llama-3.1-8b-lora.yaml",
                                "ft validate spec.yaml --nodes 2 --gpus-per-node 8",
                                f"ft validate spec.yaml --backend {render_example}"))(validate)
    app.command(epilog=examples(
        f"ft render spec.yaml --backend {render_example} -o deploy/",
        f"ft render spec.yaml --backend {render_example} -o deploy/ --check"))(render)
    app.command(epilog=examples(
        *(backends.get(name).example for name in backends.names() if backends.get(name).example),
        f"ft launch spec.yaml --backend {EXAMPLE_BACKEND} --dry-run"))(launch)
    app.command(epilog=examples("ft schema > ft.schema.json"))(schema)
    app.command(epilog=examples("ft fetch deepspeed-configs --to deepspeed_configs"))(fetch)
