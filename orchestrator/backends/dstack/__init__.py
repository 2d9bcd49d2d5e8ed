"""dstack: a multi-node `type: task` (render.py) whose every node runs `ft node`;
`dstack apply/ps/logs/attach/stop` for the job's life (jobs.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from orchestrator.backends.base import EmulatedHosts, NodeVars, Rendered, SubmitTool
from orchestrator.backends.dstack.jobs import DstackJobs
from orchestrator.backends.storage import HOST_PATH, NAMED
from orchestrator.shipping.bundle import KEEP_EVERYTHING, IgnoreFile
from trainer.torch_free.errors import UserError

# dstack versions before DSTACK_GPUS_PER_NODE only give the job's total GPU count.
GPUS_TOTAL = "DSTACK_GPUS_NUM"


class DstackBackend(DstackJobs):
    name = "dstack"
    node_vars = NodeVars(master="DSTACK_MASTER_NODE_IP", rank="DSTACK_NODE_RANK",
                         nnodes="DSTACK_NODES_NUM", nproc="DSTACK_GPUS_PER_NODE",
                         job_id="DSTACK_RUN_NAME",  # kept by `retry`
                         where="a dstack task", detect=("DSTACK_NODE_RANK", "DSTACK_RUN_NAME"))
    tool = SubmitTool("dstack", "pip install dstack, then `dstack server` or `dstack config`")
    env_prefixes = ("DSTACK_",)
    mounts = frozenset({NAMED, HOST_PATH})
    # dstack archives `files:` minus .gitignore matches, parents' included, unless a
    # .dstackignore re-includes them.
    ignore_file = IgnoreFile(".dstackignore", f"{KEEP_EVERYTHING}!*\n")
    example = "ft launch spec.yaml --backend dstack --watch"

    def storage_problems(self, spec):
        from orchestrator.backends.dstack.storage import problems

        return problems(spec)

    def emulated_storage_problems(self, spec):
        from orchestrator.backends.dstack.storage import emulated_problems

        return emulated_problems(spec)

    def render(self, spec) -> Rendered:
        from orchestrator.backends.dstack.render import render

        return render(spec)

    def gpus_per_node(self, environ: Mapping[str, str], nnodes: int) -> tuple[int, str]:
        from orchestrator.backends.base import optional_count

        per_node, source = super().gpus_per_node(environ, nnodes)
        if per_node:
            return per_node, source
        total = optional_count(environ, self.name, GPUS_TOTAL)
        if total and total % nnodes:
            raise UserError(f"ft node --backend dstack: {GPUS_TOTAL}={total} is not "
                            f"divisible by {self.node_vars.nnodes}={nnodes}")
        if total:
            return total // nnodes, f"from {GPUS_TOTAL} / {nnodes} nodes"
        return 0, f"{self.node_vars.nproc} and {GPUS_TOTAL} are"

    def nproc_shell(self, default_nproc: int | None) -> str:
        return f"${{{self.node_vars.nproc}:-$(({GPUS_TOTAL} / {self.node_vars.nnodes}))}}"

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        hosts = hosts or EmulatedHosts.shared(nodes)
        # A run name is unique per run on dstack: two launches of one spec are two jobs (the
        # output_dir lease tells a job's own restart from another job by it).
        return {"DSTACK_RUN_NAME": f"{job_name}-{os.getpid()}",
                "DSTACK_MASTER_NODE_IP": hosts.addresses[0],
                "DSTACK_NODE_RANK": str(rank), "DSTACK_NODES_NUM": str(nodes),
                "DSTACK_GPUS_PER_NODE": str(gpus_per_node),
                "DSTACK_GPUS_NUM": str(gpus_per_node * nodes)}


BACKEND = DstackBackend()
