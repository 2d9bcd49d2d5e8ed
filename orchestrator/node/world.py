"""Who is the master and which node am I: each backend's variables mapped to one `World`.

The table in DESIGN.md ("Rank and master address") is the contract; `BACKEND_VARS` is that
table in code, and `launch_line.explicit_command` writes the same variables as shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from trainer.contract.errors import UserError


@dataclass(frozen=True)
class World:
    backend: str
    master_addr: str
    master_port: int
    node_rank: int
    nnodes: int
    nproc_per_node: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendVars:
    master: str  # the variable the master address is derived from
    rank: str
    nnodes: str
    nproc: str
    where: str  # completes "is this running inside ...?" in error messages


BACKEND_VARS: dict[str, BackendVars] = {
    "dstack": BackendVars("DSTACK_MASTER_NODE_IP", "DSTACK_NODE_RANK", "DSTACK_NODES_NUM",
                          "DSTACK_GPUS_PER_NODE", "a dstack task"),
    "skypilot": BackendVars("SKYPILOT_NODE_IPS", "SKYPILOT_NODE_RANK", "SKYPILOT_NUM_NODES",
                            "SKYPILOT_NUM_GPUS_PER_NODE", "a SkyPilot task"),
    "slurm": BackendVars("SLURM_JOB_NODELIST", "SLURM_NODEID", "SLURM_NNODES",
                         "SLURM_GPUS_ON_NODE", "a Slurm job step (srun)"),
    "local": BackendVars("FT_LOCAL_MASTER_ADDR", "FT_LOCAL_NODE_RANK", "FT_LOCAL_NNODES",
                         "FT_LOCAL_NPROC_PER_NODE", "a node of `ft launch --backend local`"),
}
BACKENDS = tuple(BACKEND_VARS)
LOCAL_DEFAULT_MASTER = "127.0.0.1"
# dstack versions before DSTACK_GPUS_PER_NODE only give the job's total GPU count.
DSTACK_GPUS_TOTAL = "DSTACK_GPUS_NUM"

# Most specific first: `ft launch --backend local` inside a Slurm allocation, or a SkyPilot /
# dstack task on Slurm-managed machines, also sees SLURM_JOB_ID, but its own variables win.
DETECTION_ORDER = (("FT_LOCAL_NODE_RANK", "local"), ("DSTACK_NODE_RANK", "dstack"),
                 ("DSTACK_RUN_NAME", "dstack"), ("SKYPILOT_NODE_RANK", "skypilot"),
                 ("SLURM_JOB_ID", "slurm"))


def detect_backend(environ: Mapping[str, str]) -> str | None:
    """The backend whose variables are present, or None when none is."""
    for variable, backend in DETECTION_ORDER:
        if environ.get(variable):
            return backend
    return None


def resolve_world(backend: str, environ: Mapping[str, str], master_port: int,
                  default_nproc: int) -> World:
    """Read the backend's variables; `default_nproc` is used when it reports no GPU count."""
    if backend not in BACKEND_VARS:
        raise UserError(f"ft node: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    assert default_nproc >= 1, "callers pass at least one process per node"
    names = BACKEND_VARS[backend]
    nnodes = _int_var(environ, backend, names.nnodes, minimum=1)
    rank = _int_var(environ, backend, names.rank, minimum=0)
    if rank >= nnodes:
        raise UserError(f"ft node --backend {backend}: {names.rank}={rank} but "
                        f"{names.nnodes}={nnodes}; a node rank must be below the node count")
    master, master_note = _master_addr(backend, environ)
    nproc, nproc_note = _nproc(backend, environ, nnodes, default_nproc)
    notes = (f"node rank from {names.rank}, node count from {names.nnodes}", master_note,
             nproc_note)
    return World(backend, master, master_port, rank, nnodes, nproc, notes)


def _missing(backend: str, variable: str) -> UserError:
    where = BACKEND_VARS[backend].where
    return UserError(f"ft node --backend {backend}: {variable} is not set; is this running "
                     f"inside {where}?")


def _int_var(environ: Mapping[str, str], backend: str, variable: str, minimum: int) -> int:
    raw = environ.get(variable, "").strip()
    if not raw:
        raise _missing(backend, variable)
    return _parse_int(backend, variable, raw, minimum)


def _parse_int(backend: str, variable: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise UserError(f"ft node --backend {backend}: {variable}={raw!r} is not an integer "
                        f">= {minimum}")
    return value


def _master_addr(backend: str, environ: Mapping[str, str]) -> tuple[str, str]:
    variable = BACKEND_VARS[backend].master
    raw = environ.get(variable, "").strip()
    if backend == "local":
        return raw or LOCAL_DEFAULT_MASTER, f"master from {variable} (default 127.0.0.1)"
    if not raw:
        raise _missing(backend, variable)
    if backend == "skypilot":  # one IP per line, the head node first
        return raw.splitlines()[0].strip(), f"master is the first line of {variable}"
    if backend == "slurm":
        # Imported here: only Slurm nodes need scontrol (and the module's socket lookups).
        from orchestrator.node.slurm_master import resolve_master_address

        return resolve_master_address(raw)
    return raw, f"master from {variable}"


def _optional_count(environ: Mapping[str, str], backend: str, variable: str) -> int:
    """0 when unset or empty: GPU counts are optional (e.g. Slurm without --gpus)."""
    raw = environ.get(variable, "").strip()
    return _parse_int(backend, variable, raw, minimum=0) if raw else 0


def _nproc(backend: str, environ: Mapping[str, str], nnodes: int,
           default_nproc: int) -> tuple[int, str]:
    variable = BACKEND_VARS[backend].nproc
    per_node = _optional_count(environ, backend, variable)
    if per_node:
        return per_node, f"processes per node from {variable}"
    if backend == "dstack":
        total = _optional_count(environ, backend, DSTACK_GPUS_TOTAL)
        if total and total % nnodes == 0:
            return total // nnodes, f"processes per node from {DSTACK_GPUS_TOTAL} / {nnodes} nodes"
        if total:
            raise UserError(f"ft node --backend dstack: {DSTACK_GPUS_TOTAL}={total} is not "
                            f"divisible by {BACKEND_VARS[backend].nnodes}={nnodes}")
    checked = f"{variable} and {DSTACK_GPUS_TOTAL} are" if backend == "dstack" else f"{variable} is"
    return default_nproc, (f"{checked} not set or 0 (e.g. no GPUs requested from the backend); "
                           f"using {default_nproc} process(es) per node from the spec")
