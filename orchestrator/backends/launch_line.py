"""The launcher command line: as argv for `ft node` to exec, and as shell for generated files.

Both forms come from one table of flags (`_FLAGS`), so the command a reviewer reads in a
rendered file and the argv `ft node` runs cannot drift apart; a test runs the shell form under
bash and compares it with the argv.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orchestrator.backends.rendezvous import Rendezvous

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend

_PREFIX = {"torchrun": ("torchrun",), "accelerate": ("accelerate", "launch")}
# (flag, quantity): quantities are Rendezvous fields, plus "total" (processes in the whole job,
# which accelerate takes where torchrun takes a per-node count).
_FLAGS = {
    "torchrun": (("--nnodes", "nnodes"), ("--node-rank", "node_rank"),
                 ("--master-addr", "master_addr"), ("--master-port", "master_port"),
                 ("--nproc-per-node", "nproc_per_node")),
    "accelerate": (("--num_machines", "nnodes"), ("--machine_rank", "node_rank"),
                   ("--main_process_ip", "master_addr"), ("--main_process_port", "master_port"),
                   ("--num_processes", "total")),
}
# `ft train ...` is a console script, not a .py file: run it as is, not through python.
_NO_PYTHON = {"torchrun": "--no-python", "accelerate": "--no_python"}
# Without --multi_gpu, accelerate runs one plain process per node when a node has a single GPU
# (or none), and 2 nodes would train twice, alone. It refuses the flag for a 1-process job.
_DISTRIBUTED = {"accelerate": ("--multi_gpu",)}

def launch_argv(world: Rendezvous, launcher: str, train_argv: Sequence[str]) -> list[str]:
    """The argv `ft node` starts (and supervises) on this node."""
    total = world.nnodes * world.nproc_per_node
    values = {"nnodes": world.nnodes, "node_rank": world.node_rank,
              "master_addr": world.master_addr, "master_port": world.master_port,
              "nproc_per_node": world.nproc_per_node, "total": total}
    return _argv(launcher, {k: str(v) for k, v in values.items()}, list(train_argv),
                 no_python=_is_console_script(train_argv), distributed=total > 1)


def explicit_command(backend: Backend, launcher: str, master_port: int, train_argv: Sequence[str],
                     *, default_nproc: int | None = None, distributed: bool = True) -> str:
    """The same launch written with the backend's shell variables, on one line.

    `default_nproc` is the spec's GPUs per node, used when the backend sets no GPU count
    (ft node also treats a count of 0 as unset). `distributed=False` describes a 1-process
    job, for which accelerate is launched without --multi_gpu.
    """
    names = backend.node_vars
    nnodes = f"${names.nnodes}"
    nproc = backend.nproc_shell(default_nproc)
    values = {"nnodes": f'"{nnodes}"', "node_rank": f'"${names.rank}"',
              "master_addr": backend.master_shell(),
              "master_port": str(master_port), "nproc_per_node": f'"{nproc}"',
              "total": f'"$(({nnodes} * {nproc}))"'}
    words = _argv(launcher, values, [shlex.quote(arg) for arg in train_argv],
                  no_python=_is_console_script(train_argv), distributed=distributed)
    return " ".join(words)


def _argv(launcher: str, values: Mapping[str, str], train_argv: list[str], *, no_python: bool,
          distributed: bool) -> list[str]:
    if launcher not in _FLAGS:
        raise ValueError(f"unknown launcher {launcher!r}")
    argv = [*_PREFIX[launcher], *(_DISTRIBUTED.get(launcher, ()) if distributed else ())]
    for flag, quantity in _FLAGS[launcher]:
        argv += [flag, values[quantity]]
    if no_python:
        argv.append(_NO_PYTHON[launcher])
    return argv + train_argv


def _is_console_script(train_argv: Sequence[str]) -> bool:
    if not train_argv:
        raise ValueError("train_argv is empty")
    return not train_argv[0].endswith(".py")
