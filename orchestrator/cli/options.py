"""What several commands share: the option types (choices from the backend registry),
loading a spec with its warnings printed, rendering it as validate would pass it, and
printing to stderr."""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import backends
from orchestrator.backends.base import STAGES
from trainer.torch_free.run_switches import FORCE_LEASE_ENV, RESUME_OVERRIDE_ENV


def _choices(name: str, values: list[str]) -> type[StrEnum]:
    return StrEnum(name, {value: value for value in values})


# Every list of backends comes from the one registry (orchestrator.backends.REGISTRY).
RenderBackend = _choices("RenderBackend", backends.render_names())
AnyBackend = _choices("AnyBackend", backends.names())
Stage = _choices("Stage", list(STAGES))

SpecArg = Annotated[Path, typer.Argument(help="The spec YAML.", show_default=False)]
# Explicit metavars: typer's own read `<int range>` and repeat the range that follows.
NodesOpt = Annotated[int | None, typer.Option("--nodes", min=1, metavar="N",
                                              help="Override launch.nodes.")]
GpusOpt = Annotated[int | None, typer.Option("--gpus-per-node", min=0, metavar="N",
                                             help="Override launch.gpus_per_node.")]
EmulateOpt = Annotated[AnyBackend, typer.Option(help="Emulated nodes (--backend local, ft "
                                                "doctor): whose node variables each one gets.")]
DEFAULT_EMULATION = AnyBackend(backends.DEFAULT_EMULATION)
EXAMPLE_BACKEND = backends.DEFAULT_EMULATION  # the backend `--help` examples name
_STAGED = ", ".join(backends.get(name).shown_name for name in backends.names()
                    if backends.get(name).stages)
StageOpt = Annotated[list[Stage] | None, typer.Option(
    help="Run only this stage (repeat for several; they run in ft's order) where the backend "
         f"has a function per stage ({_STAGED}); default: preprocess, then train.",
    show_default=False)]
IsolateOpt = Annotated[bool | None, typer.Option(
    "--isolate/--no-isolate", help="--backend local: give each node its own network, "
    "hostname, /tmp, pids and private directories, as on a cluster (default: where this "
    "host allows it: Linux, root, `ip`).", show_default=False)]
# 65534: the pre-flight check uses the port after it.
MasterPortOpt = Annotated[int | None, typer.Option(min=1024, max=65534, metavar="PORT",
                                                   help="Override launch.master_port.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Take over output_dir's lease from a run that holds it (one you know is "
    "dead; a live one keeps writing).")]
StrictOpt = Annotated[bool, typer.Option(
    "--strict", help="A training key neither ft nor Axolotl knows is an error (default: a "
    "warning naming its file and line; the key is ignored, as Axolotl does).")]
OverrideOpt = Annotated[bool, typer.Option(
    "--override", help="Resume even where the spec changed what the checkpoint was trained "
    "with (batch, learning rate, data, model, adapter): the new values apply.")]


def trainer_switches(force: bool, override: bool) -> dict[str, str]:
    """The job's variables for the switches that are on (trainer/torch_free/run_switches.py)."""
    return {name: "1" for name, on in ((FORCE_LEASE_ENV, force),
                                       (RESUME_OVERRIDE_ENV, override)) if on}


def err(message: str) -> None:
    typer.echo(message, err=True)


def load_for_cli(spec_path: Path, nodes: int | None = None, gpus_per_node: int | None = None,
                 for_launch: bool = False, master_port: int | None = None,
                 strict: bool = False):
    """Load a spec, printing its warnings (settings that have no effect, unknown keys) on
    stderr, also when the spec is refused (the unknown keys are part of the story)."""
    from orchestrator.spec.load import LocatedSpecWarning, SpecWarning, load_spec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        overrides = {"nodes": nodes, "gpus_per_node": gpus_per_node, "master_port": master_port}
        try:
            return load_spec(spec_path, overrides, for_launch, strict)
        finally:
            for warning in caught:
                where = "" if isinstance(warning.message, LocatedSpecWarning) \
                    else f"{spec_path}: "
                err(f"warning: {where}{warning.message}")


def examples(*lines: str) -> str:
    """An `--help` epilog of real examples (\\b keeps click from rewrapping them)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def render_checked(spec, backend: str):
    """What `ft validate --backend` calls ready renders: the backend's refusals first."""
    from trainer.torch_free.errors import SpecError

    registered = backends.get(backend)
    problems = registered.spec_problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    rendered = registered.render(spec)
    for note in rendered.notes:
        err(f"note: {note}")
    return rendered
