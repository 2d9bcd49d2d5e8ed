"""The `ft` command line. Heavy imports (torch, transformers) happen only inside the
commands that train; `ft --help`, `ft validate` and `ft render` never load them."""

from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.cli_jobs import register as register_jobs
from orchestrator.cli_train import register as register_training
from orchestrator.train_stack import require_train_stack
from trainer.contract.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="One training spec in, a fine-tuned LLM out, on dstack, SkyPilot, "
                       "Slurm or this machine.")


class Backend(StrEnum):
    dstack = "dstack"
    skypilot = "skypilot"
    slurm = "slurm"


class LaunchBackend(StrEnum):
    dstack = "dstack"
    skypilot = "skypilot"
    slurm = "slurm"
    local = "local"


class Emulated(StrEnum):
    slurm = "slurm"
    dstack = "dstack"
    skypilot = "skypilot"
    local = "local"


class NodeBackend(StrEnum):
    dstack = "dstack"
    skypilot = "skypilot"
    slurm = "slurm"
    local = "local"


SpecArg = Annotated[Path, typer.Argument(help="The spec YAML.", show_default=False)]
NodesOpt = Annotated[int | None, typer.Option("--nodes", min=1, help="Override launch.nodes.")]
GpusOpt = Annotated[int | None, typer.Option("--gpus-per-node", min=0,
                                             help="Override launch.gpus_per_node.")]
EmulateOpt = Annotated[Emulated, typer.Option(help="Emulated nodes (--backend local, ft doctor): "
                                              "whose node variables each one gets.")]
# 65534: the pre-flight check uses the port after it.
MasterPortOpt = Annotated[int | None, typer.Option(min=1024, max=65534,
                                                   help="Override launch.master_port.")]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def load_for_cli(spec_path: Path, nodes: int | None = None, gpus_per_node: int | None = None,
                 for_launch: bool = False, master_port: int | None = None):
    """Load a spec, printing its warnings (settings that have no effect) on stderr."""
    from orchestrator.spec import SpecWarning, load_spec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        overrides = {"nodes": nodes, "gpus_per_node": gpus_per_node, "master_port": master_port}
        spec = load_spec(spec_path, overrides, for_launch)
    for warning in caught:
        _err(f"warning: {spec_path}: {warning.message}")
    return spec


def _render(spec, backend: str):
    from orchestrator.backends.registry import renderer

    rendered = renderer(backend)(spec)
    for note in rendered.notes:
        _err(f"note: {note}")
    return rendered


@app.command()
def version() -> None:
    """Print ft's version."""
    typer.echo(__version__)


@app.command()
def init(
    path: Annotated[Path | None, typer.Argument(
        help="Where to write the spec [default: ft.yaml]; with --example, the directory "
             "[default: the example's name].", show_default=False)] = None,
    name: Annotated[str, typer.Option(help="Job name.")] = "my-finetune",
    base_model: Annotated[str, typer.Option(help="Model to fine-tune.")]
    = "meta-llama/Llama-3.1-8B-Instruct",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
    example: Annotated[str | None, typer.Option(help="Write a runnable shipped example "
                                                "instead (`tiny`: spec, data, and a tiny "
                                                "model built here; needs ft[train]).")] = None,
) -> None:
    """Write a commented starter spec, or a runnable example (--example tiny)."""
    from orchestrator.output_files import write_atomic
    from orchestrator.rendering import render_template

    if example is not None:
        from orchestrator.example_init import init_example

        for line in init_example(example, path or Path(example), force):
            typer.echo(line)
        return
    path = path or Path("ft.yaml")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    text = render_template("starter-spec.yaml.j2", version=__version__, path=str(path),
                           name=name, base_model=base_model)
    write_atomic(path, text)
    load_for_cli(path)  # the starter must itself be valid
    typer.echo(f"wrote {path}; check it with `ft validate {path}`")


@app.command()
def validate(spec: SpecArg, nodes: NodesOpt = None, gpus_per_node: GpusOpt = None) -> None:
    """Check a spec: unknown keys, wrong types, impossible combinations."""
    loaded = load_for_cli(spec, nodes, gpus_per_node)
    launch = loaded.launch
    typer.echo(f"{spec}: ok ({launch.nodes} node(s) x {launch.gpus_per_node} GPU(s), "
               f"adapter={loaded.training.adapter or 'full'})")


@app.command()
def render(
    spec: SpecArg,
    backend: Annotated[Backend, typer.Option(help="Which launch file to write.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Directory to write "
                                                "the files to (default: print them).")] = None,
    check: Annotated[bool, typer.Option(help="Fail if the files in -o DIR are stale.")]
    = False,
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
            _err("stale generated files (re-run without --check to update):")
            for item in stale:
                _err(f"  {item}")
            raise typer.Exit(1)
        typer.echo(f"up to date: {', '.join(rendered.files)}")
        return
    if output is None:
        for text in rendered.files.values():
            typer.echo(text, nl=False)
        return
    for path in write_files(output, rendered.files):
        typer.echo(f"wrote {path}")


@app.command()
def launch(
    spec: SpecArg,
    backend: Annotated[LaunchBackend, typer.Option(help="Where to run; `local` emulates "
                                                   "the nodes on this machine.")],
    dry_run: Annotated[bool, typer.Option(help="Print what would be submitted; "
                                          "submit nothing.")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to keep the "
                                                "rendered files.")] = None,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
    emulate: EmulateOpt = Emulated.slurm,
    master_port: MasterPortOpt = None,
    watch: Annotated[bool, typer.Option(help="Follow the job's state and training loss "
                                        "until it ends (exit 0 if it succeeded).")] = False,
) -> None:
    """Render and submit through the backend's own tool (dstack, sky, sbatch), or run the
    nodes here (`--backend local`)."""
    from orchestrator.submit import submit

    loaded = load_for_cli(spec, nodes, gpus_per_node, for_launch=True, master_port=master_port)
    if backend is LaunchBackend.local:
        require_train_stack("`ft launch --backend local` (it trains on this machine)")
        from orchestrator.local_run import run_local

        raise typer.Exit(run_local(loaded, emulate.value, Path.cwd()))
    rendered = _render(loaded, backend.value)
    directory = output or Path(".ft") / "rendered" / loaded.launch.name
    argv = rendered.submit_command(str(directory))
    if dry_run:
        for name, text in rendered.files.items():
            typer.echo(f"# ---- {directory / name} ----")
            typer.echo(text, nl=False)
        typer.echo(f"# ---- command ----\n{shlex.join(argv)}")
        return
    record = submit(backend.value, rendered, directory, loaded)
    typer.echo(f"submitted {record.ref} ({record.name})")
    _err(f"follow it: ft status {record.ref} | ft logs {record.ref} -f | "
         f"ft cancel {record.ref}")
    if watch:
        from orchestrator.cli_jobs import watch_launched

        raise typer.Exit(watch_launched(record, loaded))


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    from orchestrator.spec_schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2, sort_keys=True))


@app.command()
def node(
    spec: SpecArg,
    backend: Annotated[NodeBackend | None, typer.Option(help="Whose variables to read "
                                                        "(default: detected).")] = None,
    spec_sha256: Annotated[str | None, typer.Option(help="Refuse to run if the spec's "
                                                    "hash differs.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the launch line; run nothing.")] = False,
    doctor: Annotated[bool, typer.Option(help="Run only the pre-flight check (`ft doctor` "
                                         "on every rank), not training.")] = False,
) -> None:
    """Inside the job, on every node: map the backend's variables and start the launcher."""
    from orchestrator.node.entry import run_node

    loaded = load_for_cli(spec, for_launch=True)
    code = run_node(loaded.launch, str(spec), spec_sha256,
                    backend.value if backend else None, dry_run=dry_run, doctor_only=doctor)
    raise typer.Exit(code)


@app.command()
def doctor(
    spec: SpecArg,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
    emulate: EmulateOpt = Emulated.slurm,
    master_port: MasterPortOpt = None,
    size_mb: Annotated[float | None, typer.Option(help="All-reduce size (default: 256 MiB "
                                                  "on GPUs, 8 MiB on CPU).")] = None,
    iters: Annotated[int, typer.Option(min=1, help="Timed all-reduces per group.")] = 10,
    in_job: Annotated[bool, typer.Option(hidden=True, help="Set by `ft node`: this process "
                                         "is one rank of the check.")] = False,
) -> None:
    """Pre-flight: all-reduce bus bandwidth within each node and per node pair, with a
    verdict against the cluster profile. On a cluster it runs inside the job (`ft node
    --doctor`, or `launch.preflight: true` before training); here it emulates the nodes."""
    require_train_stack("`ft doctor` (its all-reduces run on torch.distributed)")
    loaded = load_for_cli(spec, nodes, gpus_per_node, for_launch=True, master_port=master_port)
    # One rank, started by `ft node` through the launcher (which may not set RANK for a
    # single process): never emulate nodes from inside a node.
    if in_job or ("RANK" in os.environ and "LOCAL_RANK" in os.environ):
        from orchestrator.clusters import load_profile
        from trainer.doctor import run

        # FT_DOCTOR_EXPECT_GBS (e.g. in launch.env) pins an expectation without a profile
        # of one's own, and applies it even to emulated nodes on one host.
        pinned = os.environ.get("FT_DOCTOR_EXPECT_GBS")
        expected = float(pinned) if pinned else \
            load_profile(loaded.launch.cluster).expected_internode_busbw_gbs
        raise typer.Exit(run(expected, size_mb, iters, judge_single_host=bool(pinned)))
    from orchestrator.local_run import run_local

    raise typer.Exit(run_local(loaded, emulate.value, Path.cwd(), node_args=("--doctor",)))


class Fetchable(StrEnum):
    deepspeed_configs = "deepspeed-configs"


@app.command()
def fetch(
    what: Annotated[Fetchable, typer.Argument(help="What to copy out of ft.")],
    to: Annotated[Path, typer.Option(help="Destination directory.")] = Path("deepspeed_configs"),
) -> None:
    """Copy ft's shipped files out for editing: the DeepSpeed ZeRO configs (zero1, zero2,
    zero3, zero3_offload), then point `deepspeed:` at your copy."""
    from trainer.contract.deepspeed_files import fetch as fetch_configs

    written = fetch_configs(to)
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo(f"{to}: every config is already there; nothing overwritten")


register_training(app)
register_jobs(app)


def main() -> None:
    """Console entry point: user errors print cleanly and exit 2, never a traceback."""
    try:
        app()
    except UserError as exc:
        _err(f"error: {exc}")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
