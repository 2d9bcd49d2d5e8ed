"""DeepSpeed at training start: the spec's ZeRO config is runnable and DeepSpeed knows the
world. Which config and what it asks for is the contract's (`trainer.contract.deepspeed_files`),
so `ft validate` can check it without DeepSpeed or torch installed."""

from __future__ import annotations

from trainer.contract.deepspeed_files import quantized_zero3_problem, resolve, zero_stage
from trainer.contract.errors import UserError


def prepare_deepspeed(value: str, load_in_4bit: bool, load_in_8bit: bool) -> None:
    """Before the model loads: the config is readable and runnable, and DeepSpeed's own
    communication layer knows the world (ZeRO-3's `zero.Init` partitions weights while
    loading; accelerate joins DeepSpeed to the process group on GPUs only)."""
    problem = quantized_zero3_problem(zero_stage(resolve(value)), load_in_4bit, load_in_8bit)
    if problem:
        raise UserError(f"`deepspeed`: {problem}")
    import deepspeed

    deepspeed.init_distributed()
