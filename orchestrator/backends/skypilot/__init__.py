"""SkyPilot: a task YAML (render.py) for `sky launch` or a managed `sky jobs launch`;
`sky queue/logs/cancel` and their `jobs` forms for the job's life (jobs.py)."""

from __future__ import annotations

import os

from orchestrator.backends.base import EmulatedHosts, NodeVars, Rendered, SubmitTool
from orchestrator.backends.skypilot.jobs import SkyPilotJobs
from orchestrator.backends.storage import BUCKET, MOUNT_MODES, NAMED
from orchestrator.shipping.bundle import KEEP_EVERYTHING, IgnoreFile


class SkyPilotBackend(SkyPilotJobs):
    name = "skypilot"
    node_vars = NodeVars(master="SKYPILOT_NODE_IPS", rank="SKYPILOT_NODE_RANK",
                         nnodes="SKYPILOT_NUM_NODES", nproc="SKYPILOT_NUM_GPUS_PER_NODE",
                         job_id="SKYPILOT_TASK_ID",  # kept by managed-job recovery
                         where="a SkyPilot task", detect=("SKYPILOT_NODE_RANK",))
    tool = SubmitTool("sky", "pip install 'skypilot[aws]' (or your cloud), then `sky check`")
    env_prefixes = ("SKYPILOT_",)
    title = "SkyPilot"
    mounts = frozenset({NAMED, BUCKET, MOUNT_MODES})
    # SkyPilot syncs a workdir minus .skyignore, or without one, minus .gitignore.
    ignore_file = IgnoreFile(".skyignore", KEEP_EVERYTHING)
    example = "ft launch spec.yaml --backend skypilot --watch"

    def storage_problems(self, spec):
        from orchestrator.backends.skypilot.storage import problems

        return problems(spec)

    def emulated_storage_problems(self, spec):
        from orchestrator.backends.skypilot.storage import emulated_problems

        return emulated_problems(spec)

    def render(self, spec) -> Rendered:
        from orchestrator.backends.skypilot.render import render

        return render(spec)

    def master_addr(self, raw: str) -> tuple[str, str]:
        first = raw.splitlines()[0].strip() if raw else ""
        # One IP per line, the head node first.
        return first, f"master is the first line of {self.node_vars.master}"

    def master_shell(self) -> str:
        return f'"$(echo "${self.node_vars.master}" | head -n1)"'

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        hosts = hosts or EmulatedHosts.shared(nodes)
        # SkyPilot's task id is unique per launch (time, cluster, job id): two launches of one
        # spec are two jobs (the output_dir lease tells a job's own restart from another by it).
        return {"SKYPILOT_TASK_ID": f"{job_name}-{os.getpid()}", "SKYPILOT_NODE_RANK": str(rank),
                "SKYPILOT_NODE_IPS": "\n".join(hosts.addresses),
                "SKYPILOT_NUM_NODES": str(nodes),
                "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus_per_node)}


BACKEND = SkyPilotBackend()
