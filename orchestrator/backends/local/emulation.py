"""`ft launch --backend local`: emulate an N-node job on this machine.

Each emulated node is a process running `ft node`, given the same variables the chosen
backend (by default the registry's DEFAULT_EMULATION) sets on a real node, so the real
launch path is exercised: ft node maps them, picks the fabric, and starts torchrun; the
nodes rendezvous on localhost
(gloo on CPU, NCCL on GPUs). The nodes live and stop as one job (node_group.py). Where
this host allows it they are isolated as a cluster's nodes are (own network, hostname,
/tmp, pids, private directories; isolation.py), else they share the host and say so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

from orchestrator.backends import get, names
from orchestrator.backends.local.isolation import (
    IsolatedNodes,
    isolated_nodes,
    unavailable_reason,
)
from orchestrator.backends.local.node_group import NodeGroup
from orchestrator.backends.render_common import job_env, profile_for
from orchestrator.output_files import write_atomic
from orchestrator.process import spawn_group
from orchestrator.spec.launch_schema import duration_seconds
from orchestrator.spec.load import Spec
from trainer.torch_free.errors import SpecError, UserError
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE


def gpu_slice(rank: int, gpus_per_node: int, visible: str | None) -> str | None:
    """CUDA_VISIBLE_DEVICES for an emulated node: its own share of this machine's GPUs."""
    if not gpus_per_node:
        return None
    devices = visible.split(",") if visible else [str(i) for i in range(64)]
    mine = devices[rank * gpus_per_node:(rank + 1) * gpus_per_node]
    if len(mine) < gpus_per_node:
        raise ValueError(f"node {rank} needs {gpus_per_node} GPU(s) but CUDA_VISIBLE_DEVICES="
                         f"{visible} has too few")
    return ",".join(mine)


def run_local(spec: Spec, emulate: str, workdir: Path, node_args: tuple[str, ...] = (),
              isolate: bool | None = None) -> int:
    """Start every emulated node, stream their output prefixed, return the job's exit code.
    `node_args` go to each node's `ft node` (`--doctor`: the pre-flight check only);
    `isolate`: None isolates the nodes where this host can (isolation.py), False never."""
    reason = "--no-isolate" if isolate is False else unavailable_reason()
    if isolate and reason:
        raise UserError(f"ft launch --isolate: {reason}; drop --isolate to run the nodes "
                        "on this host's shared network, /tmp and pids")
    # Stops are caught from here on: one that comes while the nodes are set up ends the
    # launch once that is done (through the `finally` blocks that remove the network).
    group = NodeGroup(duration_seconds(spec.launch.stop_grace))
    try:
        write_atomic(_spec_file(spec, workdir), spec.effective_text)
        with contextlib.ExitStack() as stack:
            isolation = None
            if reason is None:
                isolation, reason = isolate_nodes(stack, spec, emulate, workdir,
                                                  strict=bool(isolate))
            if isolation is None:
                print(f"ft launch: the {spec.launch.nodes} node(s) share this host (loopback, "
                      f"/tmp, pids, every directory): {reason}", file=sys.stderr, flush=True)
            else:
                print(isolation.describe(), file=sys.stderr, flush=True)
            if group.stop_requested:
                print("ft launch: stopped before any node started: nothing to save yet; exit "
                      f"{RESUMABLE_EXIT_CODE} (resumable)", file=sys.stderr, flush=True)
                return RESUMABLE_EXIT_CODE
            return _run_nodes(spec, emulate, workdir, node_args, isolation, group)
    finally:
        group.close()


def describe_local(spec: Spec, emulate: str, workdir: Path, isolate: bool | None) -> str:
    """What `ft launch --backend local` would start (its --dry-run): each node's variables
    and `ft node` command. Starts nothing, writes nothing."""
    reason = "--no-isolate" if isolate is False else unavailable_reason()
    where = "isolated nodes (own network, hostname, /tmp, pids)" \
        if reason is None else f"nodes sharing this host: {reason}"
    lines = [f"# {spec.launch.nodes} emulated {emulate} node(s) in {workdir}: {where}",
             f"# the spec is written to {_spec_file(spec, workdir)}"]
    for rank, (env, argv) in enumerate(_node_commands(spec, emulate, workdir, (), None)):
        own = {k: v for k, v in env.items() if os.environ.get(k) != v}
        lines.append(f"# ---- node {rank} ----")
        lines.append(" ".join([*(f"{k}={shlex.quote(v)}" for k, v in sorted(own.items())),
                               shlex.join(argv)]))
    return "\n".join(lines)


def check_storage(spec: Spec, emulate: str) -> None:
    """Refuse what the emulated backend would: a multi-node `output_dir` its real nodes
    would not share (here every node could write to this host's one directory, and the
    job would seem to work)."""
    problems = get(emulate).emulated_storage_problems(spec)
    if problems:
        raise SpecError([replace(p, message=f"(as on {emulate}) {p.message}")
                         for p in problems], spec.source)


def isolate_nodes(stack: contextlib.ExitStack, spec: Spec, emulate: str, workdir: Path,
                  strict: bool) -> tuple[IsolatedNodes | None, str | None]:
    """(the isolated nodes, None), removed when `stack` closes; or (None, why not) where
    this root may not make namespaces (an unprivileged container), unless `strict`."""
    try:
        return stack.enter_context(isolated_nodes(spec, workdir, get(emulate).shares_submit_dir,
                                                  emulate)), None
    except UserError as exc:
        if strict:  # --isolate asked for it: no quiet fallback
            raise
        return None, str(exc)


def _spec_file(spec: Spec, workdir: Path) -> Path:
    return workdir / ".ft" / "local" / f"{spec.launch.name}.yaml"


def _node_commands(spec: Spec, emulate: str, workdir: Path, node_args: tuple[str, ...],
                   isolation: IsolatedNodes | None) -> list[tuple[dict[str, str], list[str]]]:
    """(environment, argv) of each emulated node's `ft node`."""
    launch = spec.launch
    # This shell's own job variables (ft launch inside a cluster's allocation, say) must not
    # leak into the emulated nodes: each gets only the emulated backend's.
    foreign = tuple(prefix for name in names() for prefix in get(name).env_prefixes)
    base = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    # What a real backend exports into the job: the profile's NCCL settings and launch.env
    # (variables already set here still win, as they would in a submitting shell).
    base = {**job_env(spec, profile_for(spec)), **base}
    emulated = get(emulate)
    hosts = isolation.hosts if isolation else None
    commands = []
    for rank in range(launch.nodes):
        env = {**base, **emulated.emulated_env(rank, launch.nodes, launch.gpus_per_node,
                                               launch.name, hosts=hosts)}
        devices = gpu_slice(rank, launch.gpus_per_node, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices
        if isolation:
            # NCCL tells hosts apart by hostname + boot id, and the isolated nodes share the
            # boot id: it would try shared memory, which each node has privately. Its own
            # host id makes NCCL go over eth0, as between real nodes.
            env["NCCL_HOSTID"] = isolation.hosts.names[rank]
        argv = [sys.executable, "-m", "orchestrator.cli", "node", str(_spec_file(spec, workdir)),
                "--backend", emulate, "--spec-sha256", spec.sha256, *node_args]
        if isolation:
            argv = isolation.wrap(rank, argv)
        commands.append((env, argv))
    return commands


def _run_nodes(spec: Spec, emulate: str, workdir: Path, node_args: tuple[str, ...],
               isolation: IsolatedNodes | None, group: NodeGroup) -> int:
    hosts = isolation.hosts.names if isolation else None
    commands = _node_commands(spec, emulate, workdir, node_args, isolation)
    for rank, (env, argv) in enumerate(commands):
        name = f"node {rank} (host {hosts[rank]})" if hosts else f"node {rank}"
        group.add(spawn_group(argv, env, str(workdir), die_with_launcher=True), name)
    threads = [threading.Thread(target=_relay, args=(proc, f"[node{rank}] "), daemon=True)
               for rank, proc in enumerate(group.procs)]
    for thread in threads:
        thread.start()
    code = group.wait()
    for thread in threads:
        thread.join(timeout=5)
    return code


def _relay(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
