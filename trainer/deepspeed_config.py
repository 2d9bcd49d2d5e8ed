"""DeepSpeed at training start: the spec's ZeRO config is runnable and DeepSpeed knows the
world. Which config and what it asks for is the contract's (`trainer.contract.deepspeed_files`),
so `ft validate` can check it without DeepSpeed or torch installed."""

from __future__ import annotations

import sys

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


def keep_deepspeed_unloaded() -> None:
    """For a spec without `deepspeed:`: this process treats DeepSpeed as not installed.

    accelerate and transformers import DeepSpeed whenever it is installed (accelerate's
    `extract_model_from_parallel` does on every save), and importing it picks an accelerator
    and announces it on every rank, and costs seconds. Both decide through
    `importlib.util.find_spec("deepspeed")`, which answers None for a module whose
    `sys.modules` entry is None (Python's own marker for "not importable"), so they take
    their plain paths. Nothing to do once DeepSpeed is loaded.
    """
    sys.modules.setdefault("deepspeed", None)
