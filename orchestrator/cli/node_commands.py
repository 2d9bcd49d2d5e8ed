"""`ft node` and `ft doctor`: what runs on the job's nodes (or on emulated ones here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import backends
from orchestrator.cli.options import (
    DEFAULT_EMULATION,
    EXAMPLE_BACKEND,
    AnyBackend,
    EmulateOpt,
    GpusOpt,
    IsolateOpt,
    MasterPortOpt,
    NodesOpt,
    SpecArg,
    examples,
    load_for_cli,
)
from orchestrator.train_stack import require_train_stack
from trainer.torch_free.errors import UserError
from trainer.torch_free.preflight_settings import DOCTOR_ONLY_ENV


def node(
    spec: SpecArg,
    backend: Annotated[AnyBackend | None, typer.Option(help="Whose variables to read "
                                                       "(default: detected).")] = None,
    spec_sha256: Annotated[str | None, typer.Option(help="Refuse to run if the spec's "
                                                    "hash differs.")] = None,
    file_sha256: Annotated[list[str] | None, typer.Option(
        help="PATH=SHA256 of a file the spec points to; refuse to run if it differs "
        "(repeatable; the rendered job passes one per shipped file).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the launch line; run nothing.")] = False,
    doctor: Annotated[bool, typer.Option(help="Run only the pre-flight's checks (`ft doctor` "
                                         "on every rank), not training.")] = False,
) -> None:
    """Inside the job, on every node: map the backend's variables and start the launcher."""
    from orchestrator.node.entry import check_file_hashes, check_spec_hash, run_node
    from orchestrator.spec.local_checks import require_local_files

    check_file_hashes(file_sha256 or [])
    loaded = load_for_cli(spec, for_launch=True)
    # A job `ft doctor --backend X` submitted: its rendered node command is the training one.
    doctor = doctor or os.environ.get(DOCTOR_ONLY_ENV) == "1"
    if not (dry_run or doctor):
        # The paths are this node's: check them here, once per node and before any rank
        # starts, as `ft validate` does for a job on the machine it runs on (each rank's
        # `ft train` checks again, for a launcher ft did not start).
        check_spec_hash(str(spec), spec_sha256)
        require_local_files(loaded)
    code = run_node(loaded.launch, str(spec), spec_sha256,
                    backend.value if backend else None, dry_run=dry_run, doctor_only=doctor)
    raise typer.Exit(code)


def doctor(
    spec: SpecArg,
    backend: Annotated[AnyBackend | None, typer.Option(
        help="Submit the check as a job of this backend (its nodes run only the checks); "
        "default: emulated nodes here, as `--backend local`.")] = None,
    dry_run: Annotated[bool, typer.Option(help="With --backend: print the files and the "
                                          "submit command; submit nothing.")] = False,
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
    emulate: EmulateOpt = DEFAULT_EMULATION,
    isolate: IsolateOpt = None,
    master_port: MasterPortOpt = None,
    in_job: Annotated[bool, typer.Option(hidden=True, help="Set by `ft node`: this process "
                                         "is one rank of the check.")] = False,
) -> None:
    """Pre-flight alone: the checks `ft launch` runs on the job's nodes before step 1 (each
    GPU's matmul rate and free memory, the same software on every node, and the other checks
    of `launch.preflight`), without training; exit 0, or 78 naming what failed. On a cluster
    it runs inside the job (`ft node --doctor`); here it emulates the nodes."""
    loaded = load_for_cli(spec, nodes, gpus_per_node, for_launch=True, master_port=master_port)
    # One rank, started by `ft node` through the launcher (which may not set RANK for a
    # single process): never emulate nodes from inside a node.
    if in_job or ("RANK" in os.environ and "LOCAL_RANK" in os.environ):
        require_train_stack("`ft doctor` (its checks run on torch.distributed)")
        from orchestrator.cli.train_commands import _user_error_under_ft_node
        from trainer.preflight.runner import run_alone

        # Asked for by name: the checks run even where the spec turns them off for training.
        settings = loaded.launch.preflight.model_copy(update={"enabled": True})
        try:
            run_alone(loaded.training, settings)
        except UserError as exc:
            _user_error_under_ft_node(exc)
            raise
        return
    if backend is not None and backends.get(backend.value).renders:
        from orchestrator.cli.launch_command import submit_rendered

        # Like launch.env, so the rendered job shows it: every node's `ft node` checks only.
        loaded.launch.env[DOCTOR_ONLY_ENV] = "1"
        submit_rendered(loaded, backend.value, [], None, dry_run, watch=False)
        return
    if dry_run:
        raise UserError("ft doctor --dry-run prints the job a --backend that submits one "
                        "would get; emulated nodes here have nothing to print (drop "
                        "--dry-run, or pass the --backend of your cluster)")
    require_train_stack("`ft doctor` (emulated nodes run its checks here)")
    from orchestrator.backends.local.emulation import run_local

    raise typer.Exit(run_local(loaded, emulate.value, Path.cwd(), node_args=("--doctor",),
                               isolate=isolate))


def register(app: typer.Typer) -> None:
    app.command(epilog=examples(
        f"ft node .ft/my-job.yaml --backend {EXAMPLE_BACKEND} --spec-sha256 <hash>   (in the "
        "rendered job)",
        f"ft node spec.yaml --backend {EXAMPLE_BACKEND} --dry-run   (print the world and "
        "launch line)"))(node)
    app.command(epilog=examples(
        "ft doctor examples/tiny/tiny.yaml --nodes 2",
        f"ft doctor spec.yaml --backend {EXAMPLE_BACKEND}   (a job that only checks its nodes)",
        "ft node .ft/my-job.yaml --doctor   (the same check inside a real job)"))(doctor)
