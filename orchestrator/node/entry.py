"""`ft node`: check the spec, map the backend's variables (world, job id), set NCCL up, start
the launcher and supervise its ranks (orchestrator.node.supervise: stop signals, grace, exit
code).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator import backends
from orchestrator.backends.launch_line import launch_argv
from orchestrator.backends.rendezvous import Rendezvous, resolve_rendezvous
from orchestrator.clusters import load_profile
from orchestrator.node.fabric import FabricReport, detect_fabric, node_env
from orchestrator.node.job_id import job_id_env
from orchestrator.node.nccl_log_files import failure_report, log_dir, nccl_log_env, now
from orchestrator.node.supervise import Supervisor
from orchestrator.spec.launch_schema import LaunchSpec, duration_seconds
from orchestrator.train_stack import INSTALL_HINT as TRAIN_INSTALL_HINT
from trainer.torch_free.errors import UserError
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE
from trainer.torch_free.preflight_settings import SPEC_SHA256_ENV

_INSTALL_HINT = {"torchrun": f"it comes with PyTorch: {TRAIN_INSTALL_HINT}",
                 "accelerate": TRAIN_INSTALL_HINT}


def run_node(launch: LaunchSpec, spec_path: str, spec_sha256: str | None, backend: str | None,
             environ: Mapping[str, str] = os.environ, dry_run: bool = False,
             extra_train_args: Sequence[str] = (), sysfs_root: Path = Path("/sys"),
             doctor_only: bool = False) -> int:
    """Start this node's training processes (their pre-flight runs inside them, before the
    model loads, when `launch.preflight`), or with `doctor_only` ranks that run only the
    pre-flight's checks; returns 0 after printing them when dry_run."""
    # From the very start: a stop that comes while the node is being set up is acted on
    # (nothing started: exit resumable), never lost nor a death by signal.
    supervisor = None if dry_run else Supervisor(duration_seconds(launch.stop_grace))
    try:
        return _run_node(launch, spec_path, spec_sha256, backend, environ, dry_run,
                         extra_train_args, sysfs_root, doctor_only, supervisor)
    finally:
        if supervisor is not None:
            supervisor.close()


def _run_node(launch: LaunchSpec, spec_path: str, spec_sha256: str | None,
              backend: str | None, environ: Mapping[str, str], dry_run: bool,
              extra_train_args: Sequence[str], sysfs_root: Path, doctor_only: bool,
              supervisor: Supervisor | None) -> int:
    check_spec_hash(spec_path, spec_sha256)
    chosen = backends.get(_choose_backend(backend, environ))
    # A CPU job (gpus_per_node 0, local backend) still runs one process per node.
    world = resolve_rendezvous(chosen, environ, launch.master_port, launch.gpus_per_node or 1)
    report = detect_fabric(sysfs_root, environ, master_addr=world.master_addr)
    profile = load_profile(launch.cluster)
    env, env_notes = node_env(profile, report, environ,
                             {**launch.timeouts.env(), **launch.preflight.env()})
    # The scheduler's job id wins over an FT_JOB_ID this node inherited (from the shell that
    # ran `ft launch --backend local`, say): the trainer tells the job's restarts by it.
    env = {**env, **job_id_env(chosen, environ)}
    # NCCL runs only between GPUs: a CPU job (gloo) gets no NCCL log and no promise of a
    # transport line.
    uses_nccl = launch.gpus_per_node > 0
    nccl_dir = log_dir(environ, Path.cwd(),
                       create=uses_nccl and "NCCL_DEBUG" not in environ and not dry_run)
    if uses_nccl:
        log_env, log_notes = nccl_log_env({**environ, **env}, nccl_dir, profile, report)
        env, env_notes = {**env, **log_env}, [*env_notes, *log_notes]
    if doctor_only:
        argv = _doctor_argv(world, launch, spec_path, environ)
    else:
        argv = _launcher_argv(world, launch, [*ft_command("train"), spec_path,
                                              *extra_train_args], environ)
    print(summary(world, launch, report, env, env_notes, argv), file=sys.stderr, flush=True)
    if supervisor is None:  # dry run
        return 0
    full_env, started = {**environ, **env, **_spec_env(spec_path)}, now()
    _require_launcher(argv[0], full_env, launch.launcher)
    code = supervisor.run(argv, full_env, local_ranks=world.nproc_per_node)
    if code not in (0, RESUMABLE_EXIT_CODE):
        _say_nccl_warnings(full_env, nccl_dir, started)
    return code


def _say_nccl_warnings(env: Mapping[str, str], directory: Path, started: float) -> None:
    """NCCL's WARN lines went to its log files: a failed run shows them here."""
    said = failure_report(env, directory, started)
    if said:
        print(said, file=sys.stderr, flush=True)


def _spec_env(spec_path: str) -> dict[str, str]:
    """The ranks' pre-flight compares every node's spec by this hash of the file they read."""
    try:
        return {SPEC_SHA256_ENV: hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()}
    except OSError:
        return {}  # a dry run of a spec not there yet; `ft train` says what is missing


def _doctor_argv(world: Rendezvous, launch: LaunchSpec, spec_path: str,
                 environ: Mapping[str, str]) -> list[str]:
    return _launcher_argv(world, launch, [*ft_command("doctor"), spec_path, "--in-job"],
                          environ)


def _launcher_argv(world: Rendezvous, launch: LaunchSpec, command: list[str],
                   environ: Mapping[str, str]) -> list[str]:
    argv = launch_argv(world, launch.launcher, command)
    argv[0] = _launcher_path(argv[0], environ)
    return argv


def check_spec_hash(spec_path: str, expected: str | None) -> None:
    if expected is None:
        return
    try:
        actual = hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()
    except OSError as exc:
        raise UserError(f"ft node: cannot read the spec {spec_path}: {exc.strerror}") from None
    if actual != expected.lower():
        raise UserError(f"ft node: the spec on this node differs from the one that was rendered "
                        f"({spec_path} has sha256 {actual[:12]}..., the rendered job expects "
                        f"{expected[:12]}...); render and submit again so every node trains "
                        "from the same spec")


def check_file_hashes(expected: Sequence[str]) -> None:
    """Each `PATH=SHA256` the rendered job passes: the files it ships (cluster profile,
    DeepSpeed JSON) must be the ones that were rendered, on every node."""
    for item in expected:
        path, _, digest = item.rpartition("=")
        if not path or len(digest) != 64:
            raise UserError(f"ft node: --file-sha256 {item!r} is not PATH=SHA256")
        try:
            actual = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            raise UserError(f"ft node: {path}, which the rendered job ships, cannot be read "
                            f"on this node ({exc.strerror}); submit it with `ft launch`, which "
                            "sends it with the job") from None
        if actual != digest.lower():
            raise UserError(f"ft node: {path} on this node differs from the one the job was "
                            f"rendered with (sha256 {actual[:12]}..., expected "
                            f"{digest[:12]}...); render and submit again")


def ft_command(subcommand: str) -> list[str]:
    """`ft <subcommand>`, or this interpreter's `-m orchestrator.cli <subcommand>` where `ft`
    is not on PATH."""
    if shutil.which("ft"):
        return ["ft", subcommand]
    return [sys.executable, "-m", "orchestrator.cli", subcommand]


def summary(world: Rendezvous, launch: LaunchSpec, report: FabricReport, env: Mapping[str, str],
            env_notes: Sequence[str], argv: Sequence[str]) -> str:
    """The block printed before the launch: what was found and what will run."""
    lines = [f"ft node: backend {world.backend}",
             f"ft node: node {world.node_rank} of {world.nnodes}, master "
             f"{world.master_addr}:{world.master_port}, {world.nproc_per_node} process(es) "
             "per node", *(f"  - {note}" for note in world.notes)]
    if world.nnodes != launch.nodes:
        lines.append(f"  - note: the spec says {launch.nodes} node(s); the backend's count wins")
    hcas = f" (HCAs {', '.join(report.hcas)})" if report.hcas else ""
    lines.append(f"ft node: fabric {report.fabric}{hcas}")
    lines += [f"  - {note}" for note in (*report.notes, *env_notes)]
    lines.append("ft node: sets " + (" ".join(_assignment(k, v) for k, v in
                                                  sorted(env.items())) or "nothing"))
    if any(value.startswith("=") for value in env.values()):
        lines.append("  - a leading '=' asks NCCL for exactly these names (interfaces, "
                     "HCAs), not every name that starts with them")
    lines.append(f"ft node: launch: {shlex.join(argv)}")
    return "\n".join(lines)


def _assignment(key: str, value: str) -> str:
    """KEY=VALUE as shell would read it; a value starting with '=' is quoted so that
    `NCCL_SOCKET_IFNAME="=lo"` does not read like a typo (`==lo`)."""
    quoted = shlex.quote(value)
    return f'{key}="{value}"' if value.startswith("=") and quoted == value else f"{key}={quoted}"


def _choose_backend(backend: str | None, environ: Mapping[str, str]) -> str:
    if backend is not None:
        if backend not in backends.names():
            raise UserError(f"ft node: unknown backend {backend!r}; use one of "
                            f"{', '.join(backends.names())}")
        return backend
    detected = backends.detect(environ)
    if detected is None:
        looked = ", ".join(variable for name in backends.names()
                           for variable in backends.get(name).node_vars.detect)
        raise UserError(f"ft node: cannot tell which backend started this node (none of "
                        f"{looked} is set); pass --backend")
    return detected


def _launcher_path(name: str, environ: Mapping[str, str]) -> str:
    """The launcher on PATH, else the one installed beside this Python (an unactivated
    venv: `.venv/bin/ft node ...` must still find `.venv/bin/torchrun`)."""
    if shutil.which(name, path=environ.get("PATH")):
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else name


def _require_launcher(program: str, env: dict[str, str], launcher: str) -> None:
    if shutil.which(program, path=env.get("PATH")) is None:
        raise UserError(f"ft node: {program} is not on PATH on this node; "
                        f"{_INSTALL_HINT[launcher]} (in the image, or via launch.install)")
