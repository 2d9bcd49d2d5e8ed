"""Modal: a Python app with one function per stage (render.py), started detached by
`modal run`; `modal app list/logs/stop` for the job's life (jobs.py). Modal sets no rank
variables itself: the app maps its cluster info to FT_MODAL_* (cluster_env.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from orchestrator.backends.base import STAGES, EmulatedHosts, NodeVars, Rendered, SubmitTool
from orchestrator.backends.modal import cluster_env
from orchestrator.backends.modal.jobs import ModalJobs
from orchestrator.backends.storage import NAMED


class ModalBackend(ModalJobs):
    name = "modal"
    node_vars = NodeVars(master=cluster_env.NODE_IPS, rank=cluster_env.RANK,
                         nnodes=cluster_env.NUM_NODES, nproc=cluster_env.GPUS_PER_NODE,
                         job_id=cluster_env.JOB_ID,
                         where="a Modal function rendered by ft",
                         detect=(cluster_env.RANK,))
    tool = SubmitTool("modal", "pip install modal, then `modal setup` (or set "
                      "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")
    env_prefixes = ("FT_MODAL_",)
    title = "Modal"
    mounts = frozenset({NAMED})
    example = "ft launch spec.yaml --backend modal --stage train"
    stages = STAGES
    # Every container works in the job's Volume, so a relative output_dir is one directory
    # for all of them: emulated nodes share the directory they run in, as on a cluster's
    # shared filesystem.
    shares_submit_dir = True

    def spec_problems(self, spec):
        from orchestrator.backends.modal.checks import problems

        return problems(spec)

    def storage_problems(self, spec):
        from orchestrator.backends.modal.checks import storage_problems

        return storage_problems(spec)

    def emulated_storage_problems(self, spec):
        from orchestrator.backends.modal.checks import emulated_storage_problems

        return emulated_storage_problems(spec)

    def render(self, spec) -> Rendered:
        from orchestrator.backends.modal.render import render

        return render(spec)

    def for_stages(self, rendered: Rendered, stages: Sequence[str]) -> Rendered:
        from orchestrator.backends.modal.render import submit_argv

        self.check_stages(stages)
        ordered = tuple(stage for stage in STAGES if stage in stages)
        return replace(rendered, submit_argv=submit_argv(_app_file(rendered), ordered))

    def master_addr(self, raw: str) -> tuple[str, str]:
        first = raw.splitlines()[0].strip() if raw else ""
        return first, f"master is the first line of {self.node_vars.master} (rank 0's address)"

    def master_shell(self) -> str:
        return f'"$(echo "${self.node_vars.master}" | head -n1)"'

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        # The same mapping the app runs on Modal's cluster info, for emulated containers
        # (each on its own private address when isolated, else on localhost). A function call
        # id is new per launch: two launches of one spec are two jobs.
        hosts = hosts or EmulatedHosts.shared(nodes)
        info = cluster_env.FixedCluster(rank, ["::1"] * nodes, list(hosts.addresses))
        return cluster_env.node_env(info, gpus_per_node, f"{job_name}-{os.getpid()}")


def _app_file(rendered: Rendered) -> str:
    (name,) = rendered.files
    return name


BACKEND = ModalBackend()
