"""`ft launch --backend local`: emulate an N-node job on this machine.

Each emulated node is a process running `ft node`, given the same variables the chosen
backend (Slurm by default) sets on a real node, so the real launch path is exercised: ft
node maps them, picks the fabric, and starts torchrun; the nodes rendezvous on localhost
(gloo on CPU, NCCL on GPUs). A node that fails stops the others: no half-dead job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from orchestrator.backends.common import job_env
from orchestrator.clusters import load_profile
from orchestrator.output_files import write_atomic
from orchestrator.spec import Spec

_FOREIGN_PREFIXES = ("SLURM_", "SBATCH_", "DSTACK_", "SKYPILOT_", "FT_LOCAL_")


def node_environment(backend: str, rank: int, nodes: int, gpus_per_node: int,
                     job_name: str) -> dict[str, str]:
    """The variables `backend` would set on node `rank` of an N-node job on this host."""
    if backend == "slurm":
        env = {"SLURM_JOB_ID": str(os.getpid()), "SLURM_JOB_NAME": job_name,
               "SLURM_NODEID": str(rank), "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
               "SLURM_NNODES": str(nodes), "SLURM_JOB_NUM_NODES": str(nodes),
               "SLURM_JOB_NODELIST": "localhost"}
        if gpus_per_node:
            env["SLURM_GPUS_ON_NODE"] = str(gpus_per_node)
        return env
    if backend == "dstack":
        return {"DSTACK_RUN_NAME": job_name, "DSTACK_MASTER_NODE_IP": "127.0.0.1",
                "DSTACK_NODE_RANK": str(rank), "DSTACK_NODES_NUM": str(nodes),
                "DSTACK_GPUS_PER_NODE": str(gpus_per_node),
                "DSTACK_GPUS_NUM": str(gpus_per_node * nodes)}
    if backend == "skypilot":
        return {"SKYPILOT_TASK_ID": job_name, "SKYPILOT_NODE_RANK": str(rank),
                "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * nodes),
                "SKYPILOT_NUM_NODES": str(nodes),
                "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus_per_node)}
    if backend == "local":
        return {"FT_LOCAL_MASTER_ADDR": "127.0.0.1", "FT_LOCAL_NODE_RANK": str(rank),
                "FT_LOCAL_NNODES": str(nodes), "FT_LOCAL_NPROC_PER_NODE": str(gpus_per_node)}
    raise ValueError(f"cannot emulate {backend!r}")


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
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}
    # What a real backend exports into the job: the profile's NCCL settings and launch.env
    # (variables already set here still win, as they would in a submitting shell).
    base = {**job_env(spec, load_profile(launch.cluster)), **base}
    procs = []
    for rank in range(launch.nodes):
        env = {**base, **node_environment(emulate, rank, launch.nodes, launch.gpus_per_node,
                                          launch.name)}
        devices = gpu_slice(rank, launch.gpus_per_node, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = devices
        argv = [sys.executable, "-m", "orchestrator.cli", "node", str(spec_file), "--backend",
                emulate, "--spec-sha256", spec.sha256, *node_args]
        procs.append(subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
    threads = [threading.Thread(target=_relay, args=(proc, f"[node{rank}] "), daemon=True)
               for rank, proc in enumerate(procs)]
    for thread in threads:
        thread.start()
    code = _wait_all(procs)
    for thread in threads:
        thread.join(timeout=5)
    return code


def _relay(proc: subprocess.Popen, prefix: str) -> None:
    for line in proc.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def _wait_all(procs: list[subprocess.Popen]) -> int:
    """First failure wins: the other nodes are stopped (SIGTERM, then SIGKILL)."""
    try:
        while True:
            codes = [proc.poll() for proc in procs]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                _stop(procs)
                return failed[0]
            if all(code == 0 for code in codes):
                return 0
            threading.Event().wait(0.2)
    except KeyboardInterrupt:
        _stop(procs)
        return 130


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
