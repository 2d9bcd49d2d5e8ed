"""toyq: a shell script (templates/toyq.sh.j2) that `toyq-submit` runs once per node; the
checkpoint directory of a multi-node job must be on a toyq volume (its storage rule)."""

from __future__ import annotations

import shlex

from orchestrator.backends.base import Rendered
from orchestrator.backends.node_steps import ft_node_argv, write_spec_command
from orchestrator.backends.render_common import (
    explicit_launch,
    job_env,
    job_header,
    profile_for,
    shown_submit,
)
from orchestrator.backends.storage import (
    emulated_output_problems,
    mode_problems,
    output_holder,
    selector_problems,
    volumes_on,
)
from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from orchestrator.templating import render_template
from trainer.torch_free.errors import Problem, SpecError

NAME = "toyq"
# A toyq node's disk is gone after the job: only a toyq volume outlives it.
FIX = "mount a toyq volume (`launch.volumes: [{name: ..., path: ...}]`) and put it there"


def storage_problems(spec: Spec) -> list[Problem]:
    found = selector_problems(spec) + mode_problems(spec, NAME, "toyq")
    found += output_holder(spec, NAME, relative_shared=False, fix=FIX)[0]
    return located(spec, found)


def emulated_storage_problems(spec: Spec) -> list[Problem]:
    return emulated_output_problems(spec, NAME, relative_shared=False, fix=FIX)


def render(spec: Spec) -> Rendered:
    problems = storage_problems(spec)
    if problems:
        raise SpecError(problems, spec.source)
    launch, toyq = spec.launch, spec.launch.toyq
    filename = f"{launch.name}.toyq.sh"
    flags = [*(["--queue", toyq.queue] if toyq.queue else []),
             *(["--priority", str(toyq.priority)] if toyq.priority is not None else [])]
    submit = ["toyq-submit", *flags, "--nodes", str(launch.nodes), f"{{dir}}/{filename}"]
    text = render_template(
        "toyq.sh.j2", header=job_header(spec, NAME, []), submit=shown_submit(submit),
        explicit_command=explicit_launch(spec, NAME), env=job_env(spec, profile_for(spec)),
        volumes=[m.volume.path for m in volumes_on(spec, NAME)],
        write_spec=write_spec_command(spec), node=shlex.join(ft_node_argv(spec, NAME)))
    return Rendered(NAME, {filename: text}, submit)
