"""Who is the master and which node am I: a backend's variables mapped to one `Rendezvous`
(what torchrun's static rendezvous takes: master address and port, node rank and count, and
the processes per node). Not trainer/distributed/world_ranks.py's `WorldRanks`, which is
one process's ranks.

The table in docs/backends.md ("How a job starts on each node") is the contract; each backend's
`node_vars` is its row of that table in code, and its `master_addr` / `gpus_per_node`
hooks hold what is special about it (a compressed node list, a list of IPs, a total GPU
count instead of one per node). This module only reads and checks the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.backends.base import parse_int
from trainer.torch_free.errors import UserError

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend


@dataclass(frozen=True)
class Rendezvous:
    """This node's place in the job, with a note on where each number came from."""

    backend: str
    master_addr: str
    master_port: int
    node_rank: int
    nnodes: int
    nproc_per_node: int
    notes: tuple[str, ...] = ()


def resolve_rendezvous(backend: Backend, environ: Mapping[str, str], master_port: int,
                       default_nproc: int) -> Rendezvous:
    """Read the backend's variables; `default_nproc` is used when it reports no GPU count."""
    assert default_nproc >= 1, "callers pass at least one process per node"
    names, name = backend.node_vars, backend.name
    nnodes = _int_var(environ, backend, names.nnodes, minimum=1)
    rank = _int_var(environ, backend, names.rank, minimum=0)
    if rank >= nnodes:
        raise UserError(f"ft node --backend {name}: {names.rank}={rank} but "
                        f"{names.nnodes}={nnodes}; a node rank must be below the node count")
    raw_master = environ.get(names.master, "").strip()
    master, master_note = backend.master_addr(raw_master)
    if not master:
        raise _missing(backend, names.master)
    per_node, source = backend.gpus_per_node(environ, nnodes)
    if per_node:
        nproc, nproc_note = per_node, f"processes per node {source}"
    else:
        nproc, nproc_note = default_nproc, (
            f"{source} not set or 0 (e.g. no GPUs requested from the backend); using "
            f"{default_nproc} process(es) per node from the spec")
    notes = (f"node rank from {names.rank}, node count from {names.nnodes}", master_note,
             nproc_note)
    return Rendezvous(name, master, master_port, rank, nnodes, nproc, notes)


def _missing(backend: Backend, variable: str) -> UserError:
    return UserError(f"ft node --backend {backend.name}: {variable} is not set; is this "
                     f"running inside {backend.node_vars.where}?")


def _int_var(environ: Mapping[str, str], backend: Backend, variable: str, minimum: int) -> int:
    raw = environ.get(variable, "").strip()
    if not raw:
        raise _missing(backend, variable)
    return parse_int(backend.name, variable, raw, minimum)
