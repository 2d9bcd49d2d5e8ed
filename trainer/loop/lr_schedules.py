"""Axolotl's learning-rate schedules that transformers does not name.

- `cosine_constant_lr_ratio` (with `cosine_min_lr_ratio`): linear warmup, cosine decay to
  `learning_rate * cosine_min_lr_ratio` over the first `cosine_constant_lr_ratio` of the
  steps, then that LR held to the end (continual pre-training's "decay then constant").
- `lr_quadratic_warmup`: cosine to 0 after a warmup whose factor is (step / warmup)^2.
- `lr_scheduler: one_cycle`: torch's OneCycleLR peaking at `learning_rate`, warming up over
  the warmup steps, cosine annealing; `lr_div_factor` is its initial divisor.

Plain `cosine_min_lr_ratio` is transformers' cosine_with_min_lr (trainer/loop/hf_trainer.py).
Which one applies is trainer/torch_free/lr_schedule_choice.py's decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from trainer.torch_free.lr_schedule_choice import schedule_kind
from trainer.torch_free.training import TrainingConfig

ScheduleFactory = Callable[[torch.optim.Optimizer, int, int], LRScheduler]


def _half_cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def cosine_constant_factor(step: int, *, warmup: int, total: int, min_ratio: float,
                           constant_ratio: float) -> float:
    """LR factor: warm up linearly, decay by a half cosine to `min_ratio` at step
    int(total * constant_ratio), then hold `min_ratio`."""
    if step < warmup:
        return step / max(1, warmup)
    decay_end = int(total * constant_ratio)
    progress = (min(step, decay_end) - warmup) / max(1, decay_end - warmup)
    return min_ratio + (1.0 - min_ratio) * _half_cosine(progress)


def quadratic_warmup_cosine_factor(step: int, *, warmup: int, total: int) -> float:
    """LR factor: (step / warmup)^2 during warmup, then a half cosine down to 0."""
    if step < warmup:
        return (step / max(1, warmup)) ** 2
    return _half_cosine((step - warmup) / max(1, total - warmup))


def schedule_factory(cfg: TrainingConfig) -> ScheduleFactory | None:
    """A builder (optimizer, training steps, warmup steps) -> scheduler for the schedules
    ft builds itself; None where transformers' own `lr_scheduler_type` is the schedule."""
    kind = schedule_kind(cfg.lr_scheduler, cfg.cosine_min_lr_ratio,
                         cfg.cosine_constant_lr_ratio, cfg.lr_quadratic_warmup)
    if kind == "cosine_constant":
        return partial(_lambda_schedule, partial(
            cosine_constant_factor, min_ratio=cfg.cosine_min_lr_ratio,
            constant_ratio=cfg.cosine_constant_lr_ratio))
    if kind == "cosine_quadratic":
        return partial(_lambda_schedule, quadratic_warmup_cosine_factor)
    if kind == "one_cycle":
        return partial(_one_cycle, cfg)
    return None


def _lambda_schedule(factor: Callable[..., float], optimizer: torch.optim.Optimizer,
                     total: int, warmup: int) -> LRScheduler:
    return LambdaLR(optimizer, partial(_call_factor, factor, warmup=warmup, total=total))


def _call_factor(factor: Callable[..., float], step: int, *, warmup: int, total: int) -> float:
    # A module-level callable (not a lambda), so the scheduler's state stays picklable for
    # checkpoints.
    return factor(step, warmup=warmup, total=total)


def _one_cycle(cfg: TrainingConfig, optimizer: torch.optim.Optimizer, total: int,
               warmup: int) -> LRScheduler:
    """As Axolotl builds it: warmup share as `pct_start`, cosine annealing, and
    `lr_scheduler_kwargs` passed through (they win over both)."""
    kwargs = {"pct_start": warmup / max(1, total), "anneal_strategy": "cos"}
    if cfg.lr_div_factor is not None:
        kwargs["div_factor"] = cfg.lr_div_factor
    kwargs.update(cfg.lr_scheduler_kwargs or {})
    return OneCycleLR(optimizer, max_lr=cfg.learning_rate, total_steps=max(1, total), **kwargs)
