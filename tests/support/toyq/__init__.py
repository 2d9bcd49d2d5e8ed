"""A made-up backend ("toyq", a queue with `toyq-submit` / `toyq-stat` / `toyq-kill`),
written the way a contributor would add Kubernetes or a second Slurm flavour: this one
module, plus one line in orchestrator.backends.REGISTRY. tests/test_backend_protocol.py
registers it and drives every ft command that takes a backend through it."""

from __future__ import annotations

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
from orchestrator.backends.node_steps import ft_node_command, write_spec_command
from orchestrator.backends.render_common import explicit_launch, job_env, profile_for
from orchestrator.jobs.model import JobRecord, JobState, JobStatus
from orchestrator.process import Completed
from orchestrator.rendering import header_lines, sh


class ToyQueue(Backend):
    name = "toyq"
    node_vars = NodeVars(master="TOYQ_LEADER", rank="TOYQ_INDEX", nnodes="TOYQ_SIZE",
                         nproc="TOYQ_GPUS", where="a toyq job", detect=("TOYQ_JOB",))
    tool = SubmitTool("toyq-submit", "install toyq")
    env_prefixes = ("TOYQ_",)
    example = "ft launch spec.yaml --backend toyq"

    def render(self, spec) -> Rendered:
        lines = ["#!/bin/sh", *(f"# {line}" for line in header_lines(
            spec.source, spec.sha256, f"ft render {spec.source} --backend toyq")),
            f"# explicit: {explicit_launch(spec, self.name)}",
            *(f"export {key}={sh(value)}" for key, value in
              job_env(spec, profile_for(spec)).items()),
            write_spec_command(spec), ft_node_command(spec, self.name)]
        filename = f"{spec.launch.name}.toyq.sh"
        return Rendered(self.name, {filename: "\n".join(lines) + "\n"},
                        ["toyq-submit", "--nodes", str(spec.launch.nodes),
                         f"{{dir}}/{filename}"])

    def emulated_env(self, rank: int, nodes: int, gpus_per_node: int, job_name: str,
                     hosts: EmulatedHosts | None = None) -> dict[str, str]:
        leader = hosts.addresses[0] if hosts else "127.0.0.1"
        return {"TOYQ_JOB": job_name, "TOYQ_LEADER": leader, "TOYQ_INDEX": str(rank),
                "TOYQ_SIZE": str(nodes), "TOYQ_GPUS": str(gpus_per_node)}

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
