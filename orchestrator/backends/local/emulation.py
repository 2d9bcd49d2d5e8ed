"""`ft launch --backend local`: emulate an N-node job on this machine.

Each emulated node is a process running `ft node`, given the same variables the chosen
backend (Slurm by default) sets on a real node, so the real launch path is exercised: ft
node maps them, picks the fabric, and starts torchrun; the nodes rendezvous on localhost
(gloo on CPU, NCCL on GPUs). The nodes live and stop as one job (node_group.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from orchestrator.backends import get, names
from orchestrator.backends.local.node_group import NodeGroup
from orchestrator.backends.render_common import job_env, profile_for
from orchestrator.output_files import write_atomic
from orchestrator.process import spawn_group
from orchestrator.spec.load import Spec
from trainer.contract.launch import duration_seconds


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


def run_local(spec: Spec, emulate: str, workdir: Path, node_args: tuple[str, ...] = ()) -> int:
    """Start every emulated node, stream their output prefixed, return the job's exit code.
    `node_args` go to each node's `ft node` (`--doctor`: the pre-flight check only)."""
    launch = spec.launch
    spec_file = workdir / ".ft" / "local" / f"{launch.name}.yaml"
    write_atomic(spec_file, spec.effective_text)
    # This shell's own job variables (ft launch inside a Slurm allocation, say) must not
    # leak into the emulated nodes: each gets only the emulated backend's.
    foreign = tuple(prefix for name in names() for prefix in get(name).env_prefixes)
    base = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    # What a real backend exports into the job: the profile's NCCL settings and launch.env
    # (variables already set here still win, as they would in a submitting shell).
    base = {**job_env(spec, profile_for(spec)), **base}
    emulated = get(emulate)
    procs = []
    for rank in range(launch.nodes):
        env = {**base, **emulated.emulated_env(rank, launch.nodes, launch.gpus_per_node,
                                               launch.name)}
        devices = gpu_slice(rank, launch.gpus_per_node, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices
        argv = [sys.executable, "-m", "orchestrator.cli", "node", str(spec_file), "--backend",
                emulate, "--spec-sha256", spec.sha256, *node_args]
        procs.append(spawn_group(argv, env, str(workdir), die_with_launcher=True))
    threads = [threading.Thread(target=_relay, args=(proc, f"[node{rank}] "), daemon=True)
               for rank, proc in enumerate(procs)]
    for thread in threads:
        thread.start()
    code = NodeGroup(procs, duration_seconds(launch.stop_grace)).wait()
    for thread in threads:
        thread.join(timeout=5)
    return code


def _relay(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()
