"""`ft train` of a spec that needs several processes, started as one: say what to run.

FSDP and DeepSpeed ZeRO shard the model across processes that torchrun starts; a plain
`ft train` is one process with no process group, where they fail deep inside torch
("Default process group has not been initialized", "No module named 'mpi4py'").
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from trainer.torch_free.training import TrainingConfig


def single_process_problem(cfg: TrainingConfig, spec_path: Path,
                           environ: Mapping[str, str]) -> str | None:
    # A launcher (torchrun, `ft node`) sets WORLD_SIZE, even to 1: one process under
    # torchrun has a process group, and FSDP2 on one GPU is a real choice (offload).
    if "WORLD_SIZE" in environ:
        return None
    what = ("FSDP (`fsdp` / `fsdp_config`)" if cfg.uses_fsdp
            else "DeepSpeed ZeRO (`deepspeed`)" if cfg.deepspeed else None)
    if what is None:
        return None
    spec = shlex.quote(str(spec_path))
    return (f"{spec_path}: {what} shards the model across several processes, and `ft train` "
            "is one process. On this machine run\n"
            f"  ft launch {spec} --backend local --gpus-per-node N   (N GPUs; on a CPU-only "
            "machine: --gpus-per-node 0 --nodes 2)\n"
            f"or start the processes yourself: torchrun --nproc-per-node N -m orchestrator.cli "
            f"train {spec}")
