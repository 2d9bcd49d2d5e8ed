"""The transformers Trainer as ft builds it: its TrainingArguments and the Trainer itself.

The one owner of the training arguments: `build_training_args` is the one place the spec's
training keys are mapped, and `FtTrainer` holds what ft changes in how the Trainer acts on
them (FSDP2 on CPU, plain HF/peft saves of a sharded model, one metrics line per logging
step, with its step, from rank 0 only). trainer/loop/train.py drives both.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from trainer.distributed.fsdp import ShardingPlan, gather_state_dict
from trainer.distributed.gpu_choice import one_device_per_process
from trainer.distributed.process_group import collective_timeout_s
from trainer.distributed.sharded_export import export_full_model
from trainer.distributed.world_ranks import WorldRanks
from trainer.loop.activation_offload import ActivationOffload, forward_context
from trainer.loop.compile import compile_args
from trainer.loop.early_stopping import best_model_args
from trainer.loop.lr_groups import split_lr_groups
from trainer.loop.lr_schedules import ScheduleFactory
from trainer.models.activation_memory import full_checkpointing
from trainer.models.load import Precision
from trainer.torch_free.activation_offloading import LAYER_INPUTS, offload_mode
from trainer.torch_free.deepspeed_files import resolve as resolve_deepspeed
from trainer.torch_free.lr_schedule_choice import FT_SCHEDULERS
from trainer.torch_free.optimizers import transformers_name
from trainer.torch_free.training import LrGroup, TrainingConfig


def steps_per_epoch(train_rows: int, cfg: TrainingConfig, world_size: int) -> int:
    per_step = cfg.micro_batch_size * cfg.gradient_accumulation_steps * world_size
    return max(1, math.ceil(train_rows / per_step))


def _every(strategy: str | None, per_epoch: int | None, steps: int | float | None,
           epoch_steps: int, default: str):
    """(strategy, steps) for Axolotl's `*_strategy` / `*s_per_epoch` / `*_steps` triples."""
    if strategy in ("no", "epoch", "best"):
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
                        world: WorldRanks, has_eval: bool,
                        plan: ShardingPlan | None) -> TrainingArguments:
    """`plan` is trainer/distributed/fsdp.py's sharding (None without FSDP): its settings, not the
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
        optim=transformers_name(cfg.optimizer),  # Axolotl's ao_adamw_4bit: adamw_torch_4bit
        optim_args=_optim_args(cfg),
        seed=cfg.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        tf32=precision.tf32,
        **_checkpointing(cfg, plan),
        **compile_args(cfg),
        eval_strategy=eval_strategy,
        eval_steps=eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps,
        **best_model_args(cfg, has_eval),
        # ft rotates after a checkpoint is marked complete (trainer/checkpoint/rotation.py);
        # the Trainer's own rotation runs before that and can leave no complete one.
        save_total_limit=None,
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=cfg.logging_nan_inf_filter,
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
        train_sampling_strategy="sequential" if cfg.curriculum_sampling else "random",
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
    if offload_mode(cfg) == LAYER_INPUTS:  # only reentrant recompute saves the layer inputs
        kwargs = {**kwargs, "use_reentrant": True}  # where the offload hooks see them
    # `gradient_checkpointing: true` or FSDP's activation checkpointing (the plan's, which
    # also reads the fsdp list words): the same per-decoder-layer recompute. `auto` is
    # applied per layer by trainer/models/activation_memory.py, not by the Trainer.
    enabled = full_checkpointing(cfg) or bool(plan and plan.activation_checkpointing)
    return {f"{prefix}_checkpointing": enabled,
            f"{prefix}_checkpointing_kwargs": kwargs}


def _scheduler(cfg: TrainingConfig) -> dict:
    """Axolotl's `cosine_min_lr_ratio` is transformers' cosine_with_min_lr scheduler."""
    kwargs = dict(cfg.lr_scheduler_kwargs or {})
    if cfg.lr_scheduler in FT_SCHEDULERS:  # built by FtTrainer's `schedule`, kwargs included
        return {"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {}}
    if cfg.cosine_min_lr_ratio is not None and cfg.lr_scheduler == "cosine":
        return {"lr_scheduler_type": "cosine_with_min_lr",
                "lr_scheduler_kwargs": {**kwargs, "min_lr_rate": cfg.cosine_min_lr_ratio}}
    return {"lr_scheduler_type": cfg.lr_scheduler, "lr_scheduler_kwargs": kwargs}


class FtTrainer(Trainer):
    """Saves a sharded model as plain HF/peft files that load anywhere.

    transformers' own FSDP save gathers the whole model, 4-bit base included, onto rank 0
    for every checkpoint; an adapter only needs its trainable tensors, gathered to full
    shape (a saved lora_B must never be one rank's slice). A full fine-tune writes its
    model once, at the end, a tensor at a time in the training dtype
    (trainer/distributed/sharded_export.py). Resumable training state is written by accelerate as
    sharded checkpoints.

    `sharding` is the plan trainer/distributed/fsdp.py wrapped the model with (None: not sharded).
    `schedule` builds the LR schedules transformers does not name (trainer/loop/lr_schedules.py);
    `lr_groups` are Axolotl's per-module learning rates (trainer/loop/lr_groups.py).
    """

    def __init__(self, *args, sharding: ShardingPlan | None = None,
                 schedule: ScheduleFactory | None = None,
                 lr_groups: list[LrGroup] | None = None,
                 activation_offload: ActivationOffload | None = None, **kwargs) -> None:
        self.sharding = sharding  # read while the parent builds its accelerator
        self.schedule = schedule
        self.lr_groups = lr_groups
        self.activation_offload = activation_offload
        super().__init__(*args, **kwargs)
        # transformers' plain printer (used without a progress bar) prints on every node's
        # local rank 0: one copy per node of every metrics line.
        if self.pop_callback(PrinterCallback) is not None:
            self.add_callback(MainRankPrinter)

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.lr_groups:
            opt_model = self.model if model is None else model
            split_lr_groups(getattr(optimizer, "optimizer", optimizer), opt_model,
                            self.lr_groups, set(self.get_decay_parameter_names(opt_model)),
                            self.args.weight_decay)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.schedule is not None and self.lr_scheduler is None:
            self.lr_scheduler = self.schedule(optimizer or self.optimizer, num_training_steps,
                                              self.args.get_warmup_steps(num_training_steps))
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self._fsdp_on_cpu()

    def _fsdp_on_cpu(self) -> None:
        """accelerate turns its FSDP mode on for accelerator devices only and would wrap a
        CPU-sharded model in DDP. FSDP2 itself runs on CPU over gloo (the local multi-node
        emulation and the tests use it), so give accelerate the FSDP state it gives GPUs."""
        from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

        state = self.accelerator.state
        if self.sharding is None or state.distributed_type != DistributedType.MULTI_CPU:
            return
        state.fsdp_plugin = FullyShardedDataParallelPlugin(**self.args.fsdp_plugin_args)
        state.distributed_type = DistributedType.FSDP
        self.is_fsdp_enabled = True

    def compute_loss_context_manager(self):
        """The training forward runs under the activation offload hooks (if asked for);
        backward, and the recompute inside it, does not (trainer/loop/activation_offload.py)."""
        stack = super().compute_loss_context_manager()
        if self.model.training:
            stack.enter_context(forward_context(self.activation_offload))
        return stack

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        """Every printed metrics line carries its step, so `ft launch --watch` and anyone
        reading a job log need not infer it from the epoch."""
        super().log({**logs, "step": self.state.global_step}, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if self.sharding is None:
            return super().save_model(output_dir, _internal_call)
        output_dir = output_dir or self.args.output_dir
        if hasattr(self.model, "peft_config"):
            self._save_whole_adapter(output_dir)
        elif not _internal_call:
            export_full_model(self.model, Path(output_dir), self.sharding.param_dtype,
                              is_main=self.args.should_save, tokenizer=self.processing_class)
        # A checkpoint of a full fine-tune (`_internal_call`) gets no model files: the
        # sharded DCP files accelerate writes beside them (pytorch_model_fsdp_0/,
        # optimizer_0/) are what resume loads, and a whole copy per checkpoint would gather
        # the entire model onto rank 0 at every save.
        return None

    def _save_whole_adapter(self, output_dir: str) -> None:
        """Small enough to gather at every checkpoint, which then loads with plain peft."""
        # Every rank joins the gather; rank 0 receives the tensors.
        state = gather_state_dict(self.model, trainable_only=True,
                                  rank=self.args.process_index)
        if self.args.should_save:
            self.model.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)


class MainRankPrinter(PrinterCallback):
    """transformers' metrics line, printed by global rank 0 only, with its values as numbers:
    transformers formats each float into a string (`{'loss': '6.247'}`), which reads as
    text in a log and parses as text anywhere else."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs is not None:
            print({k: _four_digits(v) for k, v in logs.items() if k != "total_flos"})


def _four_digits(value):
    """A float rounded to 4 significant digits as transformers shows it, kept a number (nan
    and inf stay text: as numbers the line would no longer read back as a Python literal)."""
    if not isinstance(value, float):
        return value
    return float(f"{value:.4g}") if math.isfinite(value) else str(value)
