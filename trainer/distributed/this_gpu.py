"""What `ft train` reads of the GPU it will train on before anything else runs there: its
name and memory, and whether ft's default kernels (Liger's) will be on, for the automatic
layout's memory estimate (orchestrator/cli/train_layout.py)."""

from __future__ import annotations

import torch


def this_gpu(local_rank: int) -> tuple[str, int] | None:
    """(name, total bytes) of this rank's own GPU, None without one. Only this rank's device
    is read: reading another's would start a CUDA context there."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(local_rank)
    return props.name, int(props.total_memory)


def liger_will_run() -> bool:
    """Liger's kernels are on where the spec leaves them to ft: installed and a GPU trains
    (trainer/kernels/plan.py)."""
    from trainer.kernels.plan import installed

    return torch.cuda.is_available() and installed("liger_kernel")
