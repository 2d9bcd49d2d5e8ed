"""Slurm: an sbatch script (render.py) whose one srun step runs `ft node` on every node;
squeue/sacct/scontrol/scancel for the job's life (jobs.py); the master's address from the
node list (master.py)."""

from __future__ import annotations

from orchestrator.backends.base import EmulatedHosts, NodeVars, Rendered, SubmitTool
from orchestrator.backends.slurm.jobs import SlurmJobs


class SlurmBackend(SlurmJobs):
    name = "slurm"
    node_vars = NodeVars(master="SLURM_JOB_NODELIST", rank="SLURM_NODEID", nnodes="SLURM_NNODES",
                         nproc="SLURM_GPUS_ON_NODE", where="a Slurm job step (srun)",
                         job_id="SLURM_JOB_ID",  # kept by `scontrol requeue`
                         detect=("SLURM_JOB_ID",))
    tool = SubmitTool("sbatch", "run ft on a Slurm login node (sbatch must be on PATH)")
    env_prefixes = ("SLURM_", "SBATCH_")
    title = "Slurm"
    shares_submit_dir = True  # Slurm has no volumes: jobs rely on a shared filesystem
    example = "ft launch spec.yaml --backend slurm --watch"

    def storage_problems(self, spec):
        from orchestrator.backends.slurm.storage import problems

        return problems(spec)

    def render(self, spec) -> Rendered:
        from orchestrator.backends.slurm.render import render

        return render(spec)

    def master_addr(self, raw: str) -> tuple[str, str]:
        if not raw:
            return "", ""
        # Imported here: only Slurm nodes need scontrol (and the module's socket lookups).
        from orchestrator.backends.slurm.master import resolve_master_address

        return resolve_master_address(raw)

    def master_shell(self) -> str:
        return f'"$(scontrol show hostnames "${self.node_vars.master}" | head -n1)"'

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        import os

        hosts = hosts or EmulatedHosts.shared(nodes)

        env = {"SLURM_JOB_ID": str(os.getpid()), "SLURM_JOB_NAME": job_name,
               "SLURM_NODEID": str(rank), "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0",
               "SLURM_NNODES": str(nodes), "SLURM_JOB_NUM_NODES": str(nodes),
               # Node names, as Slurm gives them; ft node finds the master's address by name.
               "SLURM_JOB_NODELIST": ",".join(dict.fromkeys(hosts.names))}
        if gpus_per_node:
            env["SLURM_GPUS_ON_NODE"] = str(gpus_per_node)
        return env


BACKEND = SlurmBackend()
