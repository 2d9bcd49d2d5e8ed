"""A made-up backend ("toyq", a queue with `toyq-submit` / `toyq-stat` / `toyq-kill`),
written the way a contributor would add Kubernetes or a second Slurm flavour: this package
(its options model, its render through its template `toyq.sh.j2`, its storage rule, its job
lifecycle and node variables), plus one line in orchestrator.backends.REGISTRY; its template
goes to templates/, named after it. tests/test_backend_protocol.py registers it in a copy of
ft and drives every ft command that takes a backend through it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestrator.backends.base import (
    Backend,
    EmulatedHosts,
    NodeVars,
    Rendered,
    Submitted,
    SubmitTool,
)
from orchestrator.backends.job_model import JobRecord, JobState, JobStatus
from orchestrator.backends.storage import NAMED
from orchestrator.process import Completed


class ToyQueue(Backend):
    name = "toyq"
    # TOYQ_JOB: the job's id on every node, kept when toyq requeues it.
    node_vars = NodeVars(master="TOYQ_LEADER", rank="TOYQ_INDEX", nnodes="TOYQ_SIZE",
                         nproc="TOYQ_GPUS", job_id="TOYQ_JOB", where="a toyq job",
                         detect=("TOYQ_JOB",))
    tool = SubmitTool("toyq-submit", "install toyq")
    env_prefixes = ("TOYQ_",)
    example = "ft launch spec.yaml --backend toyq"
    mounts = frozenset({NAMED})

    def storage_problems(self, spec):
        from orchestrator.backends.toyq.render import storage_problems

        return storage_problems(spec)

    def emulated_storage_problems(self, spec):
        from orchestrator.backends.toyq.render import emulated_storage_problems

        return emulated_storage_problems(spec)

    def render(self, spec) -> Rendered:
        from orchestrator.backends.toyq.render import render

        return render(spec)

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        leader = hosts.addresses[0] if hosts else "127.0.0.1"
        return {"TOYQ_JOB": f"{job_name}-{os.getpid()}", "TOYQ_LEADER": leader,
                "TOYQ_INDEX": str(rank), "TOYQ_SIZE": str(nodes), "TOYQ_GPUS": str(gpus_per_node)}

    def parse_submit(self, result: Completed, rendered: Rendered, workdir: Path) -> Submitted:
        return Submitted(result.stdout.strip())

    def statuses(self, records: Sequence[JobRecord]) -> dict[str, JobStatus]:
        result = self.run_tool(["toyq-stat", *(r.job_id for r in records)])
        states = dict(line.split() for line in result.stdout.splitlines())
        return {r.ref: JobStatus(JobState(states[r.job_id]), states[r.job_id])
                for r in records}

    def log_lines(self, record: JobRecord, follow: bool) -> Iterator[str]:
        yield from self.run_tool(["toyq-log", record.job_id]).stdout.splitlines()

    def cancel(self, record: JobRecord) -> str:
        return self.run_tool(["toyq-kill", record.job_id]).stdout.strip()


BACKEND = ToyQueue()
