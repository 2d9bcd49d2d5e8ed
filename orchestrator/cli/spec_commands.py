"""`ft init / validate / render / schema / fetch / version`: writing, checking and rendering
a spec (`ft launch` submits it: launch_command.py). Nothing here imports torch."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__, backends
from orchestrator.cli.options import (
    AnyBackend,
    GpusOpt,
    NodesOpt,
    RenderBackend,
    SpecArg,
    StrictOpt,
    err,
    examples,
    load_for_cli,
    render_checked,
)
from trainer.torch_free.errors import UserError


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
    from orchestrator.templating import render_template

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
    strict: StrictOpt = False,
) -> None:
    """Check a spec: wrong types, impossible combinations, refused features (every problem
    at once, with its YAML path and line; exit 2), unknown keys (warned; errors with
    --strict), then what each backend's launch needs."""
    from orchestrator.readiness import readiness, yaml_has_launch
    from orchestrator.spec.layout_report import layout_report
    from orchestrator.spec.memory_fit import memory_check

    loaded = load_for_cli(spec, nodes, gpus_per_node, strict=strict)
    trained, layout = layout_report(loaded)  # the layout ft chooses, and inter-node bytes
    memory, too_big = memory_check(trained)  # too_big: why it cannot fit its GPU
    launch = loaded.launch
    names = [backend.value] if backend else backends.names()
    notes: dict[str, list[str]] = {}
    report = readiness(spec, names, {"nodes": nodes, "gpus_per_node": gpus_per_node}, notes)
    # A plain Axolotl config says nothing about where it runs: its launch needs are advice
    # until it (or the command line) names a launch.
    launch_named = bool(backend or nodes or gpus_per_node) \
        or yaml_has_launch(loaded.effective_text)
    unlaunchable = all(report.values()) and launch_named
    if too_big:
        err(f"error: {too_big}")
    if unlaunchable:
        err(f"{spec}: the training keys are valid, but " + (
            f"`--backend {names[0]}` cannot launch it:" if backend else
            "no backend can launch it:"))
    elif not too_big:
        typer.echo(f"{spec}: ok ({launch.nodes} node(s) x {launch.gpus_per_node} GPU(s), "
                   f"adapter={loaded.training.adapter or 'full'})")
        for line in layout:
            typer.echo(f"  {line}")
        for line in memory:
            typer.echo(f"  {line}")
    for name, problems in report.items():
        if not problems:
            typer.echo(f"  --backend {name}: ready")
            for note in notes.get(name, []):
                err(f"  --backend {name}: note: {note}")
        for problem in problems:
            err(f"  --backend {name}: not ready: {problem.format(str(spec))}")
    if unlaunchable or too_big:
        raise typer.Exit(2)


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
    strict: StrictOpt = False,
) -> None:
    """Render the launch file(s) for a backend: deterministic, reviewable, checkable."""
    from orchestrator.output_files import stale_files, write_files

    rendered = render_checked(load_for_cli(spec, nodes, gpus_per_node, for_launch=True,
                                           strict=strict), backend.value)
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
    from trainer.torch_free.deepspeed_files import fetch as fetch_configs

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
    app.command(epilog=examples("ft schema > ft.schema.json"))(schema)
    app.command(epilog=examples("ft fetch deepspeed-configs --to deepspeed_configs"))(fetch)
