"""The scheduler's job id, handed to the trainer as one neutral variable (FT_JOB_ID).

Each backend names the variable that survives its job's restarts and requeues
(`node_vars.job_id`); the trainer reads only FT_JOB_ID, so it names no backend. The value
keeps the variable's name (`<VARIABLE>=4242`): ids of two schedulers never compare equal,
and a lease's holder reads as the job a user can look up.

`ft node` exports it before starting the launcher. `ft train` under a launcher of the user's
own (their scheduler's step running `torchrun ... ft train`) fills it the same way from
whichever backend's variables it finds, so such a job keeps its identity; with no scheduler
at all there is none, and the trainer names the run by its output_dir alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator import backends
from trainer.torch_free.job_identity import JOB_ID_ENV

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend


def job_id_env(backend: Backend, environ: Mapping[str, str]) -> dict[str, str]:
    """{FT_JOB_ID: "VARIABLE=value"} from the backend's job variable; {} when it is unset
    (the trainer then has no job identity, as outside any scheduler)."""
    variable = backend.node_vars.job_id
    value = environ.get(variable, "").strip()
    return {JOB_ID_ENV: f"{variable}={value}"} if value else {}


def job_id_outside_node(environ: Mapping[str, str]) -> dict[str, str]:
    """For `ft train` not started by `ft node`: FT_JOB_ID from the detected backend, unless
    it is set already (by `ft node`, or by the user's own launcher)."""
    if environ.get(JOB_ID_ENV):
        return {}
    name = backends.detect(environ)
    return job_id_env(backends.get(name), environ) if name else {}
