"""Spec -> transformers TrainingArguments: the one place the training keys are mapped."""

from __future__ import annotations

import math
import sys

import torch
from transformers import TrainingArguments

from trainer.activation_memory import full_checkpointing
from trainer.contract.deepspeed_files import resolve as resolve_deepspeed
from trainer.contract.training import TrainingConfig
from trainer.fsdp import ShardingPlan
from trainer.gpu_choice import one_device_per_process
from trainer.model import Precision
from trainer.process_group import collective_timeout_s
from trainer.world import World


def steps_per_epoch(train_rows: int, cfg: TrainingConfig, world_size: int) -> int:
    per_step = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size
    return max(1, math.ceil(train_rows / per_step))


def _every(strategy: str | None, per_epoch: int | None, steps: int | float | None,
           epoch_steps: int, default: str):
    """(strategy, steps) for Axolotl's `*_strategy` / `*s_per_epoch` / `*_steps` triples."""
    if strategy in ("no", "epoch"):
        return strategy, None
    if steps:
        return "steps", steps
    if per_epoch:
        return "steps", max(1, epoch_steps // per_epoch)
    if strategy == "steps":  # validation makes sure a step count is given with it
        return "steps", epoch_steps
    return default, None


def _optim_args(cfg: TrainingConfig) -> str | None:
    """transformers takes `optim_args` as "k=v,k=v"; Axolotl configs often write a mapping."""
    if isinstance(cfg.optim_args, dict):
        return ",".join(f"{k}={v}" for k, v in cfg.optim_args.items())
    return cfg.optim_args


def _report_to(cfg: TrainingConfig) -> list[str]:
    targets = []
    if cfg.wandb_project:
        targets.append("wandb")
    if cfg.mlflow_tracking_uri:
        targets.append("mlflow")
    if cfg.use_tensorboard:
        targets.append("tensorboard")
    return targets or ["none"]


def build_training_args(cfg: TrainingConfig, precision: Precision, train_rows: int,
                        world: World, has_eval: bool,
                        plan: ShardingPlan | None) -> TrainingArguments:
    """`plan` is trainer/fsdp.py's sharding (None without FSDP): its settings, not the
    spec's `fsdp_config`, are what accelerate is told."""
    epoch_steps = steps_per_epoch(train_rows, cfg, world.world_size)
    eval_strategy, eval_steps = _every(cfg.eval_strategy, cfg.evals_per_epoch, cfg.eval_steps,
                                       epoch_steps, default="no")
    save_strategy, save_steps = _every(cfg.save_strategy, cfg.saves_per_epoch, cfg.save_steps,
                                       epoch_steps, default="no")
    if not has_eval:
        eval_strategy, eval_steps = "no", None
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else (cfg.warmup_ratio or 0.0)
    timeout = collective_timeout_s(cfg)
    optim_kwargs = {k: getattr(cfg, k) for k in ("adam_beta1", "adam_beta2", "adam_epsilon")
                    if getattr(cfg, k) is not None}
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.micro_batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        **_scheduler(cfg),
        warmup_steps=warmup,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0,
        optim=cfg.optimizer,
        optim_args=_optim_args(cfg),
        seed=cfg.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        tf32=precision.tf32,
        **_checkpointing(cfg, plan),
        eval_strategy=eval_strategy,
        eval_steps=eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps,
        # ft rotates after a checkpoint is marked complete (trainer/checkpoint_rotation.py);
        # the Trainer's own rotation runs before that and can leave no complete one.
        save_total_limit=None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        # Only global rank 0 is the "main" process for transformers' logging: the other
        # ranks, node leaders included, log warnings and errors only.
        log_on_each_node=False,
        report_to=_report_to(cfg),
        run_name=cfg.wandb_name,
        push_to_hub=bool(cfg.hub_model_id),
        hub_model_id=cfg.hub_model_id,
        hub_strategy=cfg.hub_strategy or "every_save",
        fsdp=True if plan else None,
        fsdp_config=plan.accelerate_fsdp_config() if plan else None,
        deepspeed=str(resolve_deepspeed(cfg.deepspeed)) if cfg.deepspeed else None,
        ddp_timeout=timeout,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=cfg.dataloader_num_workers or 0,
        dataloader_pin_memory=bool(cfg.dataloader_pin_memory),
        # torch's DataLoader refuses a prefetch factor without workers (validation says so).
        dataloader_prefetch_factor=cfg.dataloader_prefetch_factor
        if cfg.dataloader_num_workers else None,
        remove_unused_columns=False,  # our rows carry exactly the model inputs (position_ids)
        use_cpu=not torch.cuda.is_available(),
        # One bar, on global rank 0, and only on a terminal: a scheduler's job log gets one
        # metrics line per logging step instead.
        disable_tqdm=not (world.is_main and sys.stderr.isatty()),
        **optim_kwargs,
    )
    one_device_per_process(args)
    return args


def _checkpointing(cfg: TrainingConfig, plan: ShardingPlan | None) -> dict:
    """Activation checkpointing, under the name this transformers version uses for it
    (5.x renamed gradient_checkpointing to activation_checkpointing)."""
    prefix = "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
        else "gradient"
    kwargs = cfg.gradient_checkpointing_kwargs or {"use_reentrant": False}
    # `gradient_checkpointing: true` or FSDP's activation checkpointing (the plan's, which
    # also reads the fsdp list words): the same per-decoder-layer recompute. `auto` is
    # applied per layer by trainer/activation_memory.py, not by the Trainer.
    enabled = full_checkpointing(cfg) or bool(plan and plan.activation_checkpointing)
    return {f"{prefix}_checkpointing": enabled,
            f"{prefix}_checkpointing_kwargs": kwargs}


def _scheduler(cfg: TrainingConfig) -> dict:
    """Axolotl's `cosine_min_lr_ratio` is transformers' cosine_with_min_lr scheduler."""
    kwargs = dict(cfg.lr_scheduler_kwargs or {})
    if cfg.cosine_min_lr_ratio is not None and cfg.lr_scheduler == "cosine":
        return {"lr_scheduler_type": "cosine_with_min_lr",
                "lr_scheduler_kwargs": {**kwargs, "min_lr_rate": cfg.cosine_min_lr_ratio}}
    return {"lr_scheduler_type": cfg.lr_scheduler, "lr_scheduler_kwargs": kwargs}
