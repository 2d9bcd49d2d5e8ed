"""`ft train` run directly (no launcher) on a machine with several GPUs trains on one.

Without a launcher there is one process; transformers then wraps the model in
`torch.nn.DataParallel` over every visible GPU, which gradient checkpointing breaks
(CheckpointError: tensors on cuda:1) and which is slower than one process per GPU anyway.
Silently starting one process per GPU instead would multiply the spec's global batch
(micro_batch_size x accumulation x world) behind the user's back, so ft trains on the first
visible GPU and says how to use all of them: the same launcher path a multi-node job takes.

Hiding the other GPUs only works before the CUDA driver starts. When something started it
first (a sitecustomize, a profiler, a notebook that touched CUDA), the process still sees
every GPU, and transformers would still wrap DataParallel and multiply the batch by the GPU
count; `one_device_per_process` keeps the Trainer on its one device in that case too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Set by torchrun / accelerate launch / ft node for every rank.
LAUNCHER_VARS = ("WORLD_SIZE", "LOCAL_RANK", "RANK")


def one_gpu_env(environ: Mapping[str, str], visible: int) -> tuple[dict[str, str], str | None]:
    """(variables to set, note for the user) for a process that sees `visible` GPUs."""
    if visible <= 1 or any(environ.get(v) for v in LAUNCHER_VARS):
        return {}, None
    listed = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    first = listed[0].strip() if listed else "0"
    note = (f"{visible} GPUs are visible but `ft train` is one process: it trains on GPU "
            f"{first} only. To train on all of them: `ft launch SPEC --backend local "
            f"--gpus-per-node {visible}` (or `torchrun --nproc-per-node {visible}` around "
            "`ft train`).")
    return {"CUDA_VISIBLE_DEVICES": first}, note


def use_one_gpu_outside_launcher() -> str | None:
    """Apply one_gpu_env to this process before CUDA starts; returns the note, if any."""
    import torch

    # device_count() asks NVML and starts no CUDA context; torch.cuda.is_available() would
    # initialise the driver, which reads CUDA_VISIBLE_DEVICES once and for all.
    updates, note = one_gpu_env(os.environ, torch.cuda.device_count())
    if not torch.cuda.is_initialized():
        os.environ.update(updates)
    return note


def one_device_per_process(args) -> None:
    """TrainingArguments that counted several GPUs in one process (CUDA started before
    `use_one_gpu_outside_launcher` could hide them) train on `args.device` alone: no
    DataParallel, and the spec's micro-batch size stays per process."""
    if args.n_gpu > 1:
        args._n_gpu = 1
