"""What validation tells about a hub attention kernel (`attn_implementation: org/repo`):
whether it loads is a fact of the job's machine, not of the spec, so the spec passes and
the user hears before the job starts what it needs and what happens without it."""

from __future__ import annotations

from trainer.torch_free.attention_names import is_hub_kernel
from trainer.torch_free.training import TrainingConfig


def hub_kernel_notes(training: TrainingConfig) -> list[str]:
    name = training.attn_implementation
    if not is_hub_kernel(name):
        return []
    return [f"`attn_implementation: {name}` is a hub kernel: the job loads it where it has a "
            "GPU, the `kernels` package (ft-finetune[hub-kernels]) and the kernel (hub access "
            "or the HF cache); elsewhere it trains with the best installed attention kernel "
            "and says why"]
