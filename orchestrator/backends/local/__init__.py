"""local: the job's nodes run here, as processes (emulation.py), each given the variables
the emulated backend sets (`--emulate NAME`, any registered backend), through the same
`ft node` path a cluster node takes. Renders nothing, submits nothing."""

from __future__ import annotations

import os

from orchestrator.backends.base import Backend, EmulatedHosts, NodeVars

DEFAULT_MASTER = "127.0.0.1"


class LocalBackend(Backend):
    name = "local"
    node_vars = NodeVars(master="FT_LOCAL_MASTER_ADDR", rank="FT_LOCAL_NODE_RANK",
                         nnodes="FT_LOCAL_NNODES", nproc="FT_LOCAL_NPROC_PER_NODE",
                         job_id="FT_LOCAL_JOB_ID",
                         where="a node of `ft launch --backend local`",
                         detect=("FT_LOCAL_NODE_RANK",))
    env_prefixes = ("FT_LOCAL_",)
    example = "ft launch examples/tiny/tiny.yaml --backend local --nodes 2"

    def master_addr(self, raw: str) -> tuple[str, str]:
        return raw or DEFAULT_MASTER, f"master from {self.node_vars.master} (default " \
            f"{DEFAULT_MASTER})"

    def master_shell(self) -> str:
        return f'"${{{self.node_vars.master}:-{DEFAULT_MASTER}}}"'

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        names = self.node_vars
        master = hosts.names[0] if hosts else DEFAULT_MASTER  # isolated: found by name
        # One launch is one job (this process runs every node): a second launch of the spec
        # is another job, which must not take the first one's output_dir lease as its own.
        return {names.master: master, names.rank: str(rank), names.nnodes: str(nodes),
                names.nproc: str(gpus_per_node), names.job_id: f"{job_name}-{os.getpid()}"}


BACKEND = LocalBackend()
