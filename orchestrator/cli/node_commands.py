"""`ft node` and `ft doctor`: what runs on the job's nodes (or on emulated ones here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

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
    doctor: Annotated[bool, typer.Option(help="Run only the pre-flight check (`ft doctor` "
                                         "on every rank), not training.")] = False,
) -> None:
    """Inside the job, on every node: map the backend's variables and start the launcher."""
    from orchestrator.node.entry import check_file_hashes, check_spec_hash, run_node
    from orchestrator.spec.local_checks import require_local_files

    check_file_hashes(file_sha256 or [])
    loaded = load_for_cli(spec, for_launch=True)
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
    nodes: NodesOpt = None,
    gpus_per_node: GpusOpt = None,
    emulate: EmulateOpt = DEFAULT_EMULATION,
    isolate: IsolateOpt = None,
    master_port: MasterPortOpt = None,
    size_mb: Annotated[float | None, typer.Option(help="All-reduce size (default: 256 MiB "
                                                  "on GPUs, 8 MiB on CPU).")] = None,
    iters: Annotated[int, typer.Option(min=1, metavar="N",
                                       help="Timed all-reduces per group.")] = 10,
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
        from trainer.distributed.doctor import run

        # FT_DOCTOR_EXPECT_GBS (e.g. in launch.env) pins an expectation without a profile
        # of one's own, and applies it even to emulated nodes on one host.
        pinned = os.environ.get("FT_DOCTOR_EXPECT_GBS")
        expected = float(pinned) if pinned else \
            load_profile(loaded.launch.cluster).expected_internode_busbw_gbs
        raise typer.Exit(run(expected, size_mb, iters, judge_single_host=bool(pinned)))
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
        "ft node .ft/my-job.yaml --doctor   (the same check inside a real job)"))(doctor)
