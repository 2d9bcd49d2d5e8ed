"""DeepSpeed at training start: the spec's ZeRO config is runnable and DeepSpeed knows the
world. Which config and what it asks for is the contract's (`trainer.torch_free.deepspeed_files`),
so `ft validate` can check it without DeepSpeed or torch installed."""

from __future__ import annotations

import sys

from trainer.torch_free.deepspeed_files import quantized_zero3_problem, resolve, zero_stage
from trainer.torch_free.errors import UserError


def prepare_deepspeed(value: str, load_in_4bit: bool, load_in_8bit: bool) -> None:
    """Before the model loads: the config is readable and runnable, and DeepSpeed's own
    communication layer knows the world (ZeRO-3's `zero.Init` partitions weights while
    loading; accelerate joins DeepSpeed to the process group on GPUs only)."""
    problem = quantized_zero3_problem(zero_stage(resolve(value)), load_in_4bit, load_in_8bit)
    if problem:
        raise UserError(f"`deepspeed`: {problem}")
    import deepspeed

    _no_cpu_shm_op_build()
    deepspeed.init_distributed()


# DeepSpeed's name for its CPU shared-memory allreduce op (deepspeed/ops/op_builder/cpu/comm.py).
CPU_SHM_OP = "deepspeed_shm_comm"


def _no_cpu_shm_op_build() -> None:
    """Without a GPU, DeepSpeed's first init JIT-compiles a C++ shared-memory allreduce op
    (ninja, -fopenmp): minutes on a small machine, and a compile killed halfway leaves a lock
    file that makes every later run on that machine wait forever. ft's CPU runs are
    emulations and tests, where gloo's allreduce is enough, so it is marked incompatible
    (DeepSpeed then uses torch.distributed as it does on any platform without the op)."""
    import torch

    if torch.cuda.is_available():
        return
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[CPU_SHM_OP] = False


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
