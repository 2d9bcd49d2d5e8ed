"""`ft train`: setup -> train -> save -> cleanup, on the transformers Trainer.

The same function runs on a laptop CPU, one GPU, or every rank of a multi-node job
(torchrun sets RANK/WORLD_SIZE, read once here into a `WorldRanks`; ft joins the process group,
accelerate inside the Trainer reuses it).
"""

from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path

import torch

from trainer.checkpoint.disk_full import disk_full_is_a_user_error
from trainer.checkpoint.layout_guard import check_layout
from trainer.checkpoint.output_lease import OutputLease
from trainer.checkpoint.resume import agree_on_resume, mark_complete
from trainer.checkpoint.resume_guard import (
    OVERRIDE_ENV,
    NewLearningRate,
    check_resume,
    trained_with,
)
from trainer.checkpoint.save import CompleteCheckpointMarker, SaveAfterFirstStep
from trainer.console.rank_logging import setup_console
from trainer.data.collate import make_collator
from trainer.data.pipeline import prepare_data
from trainer.distributed.deepspeed_config import keep_deepspeed_unloaded, prepare_deepspeed
from trainer.distributed.device_mesh import check_dp_sizes
from trainer.distributed.fsdp import loads_on_meta, plan_for, require_runnable_here, shard_model
from trainer.distributed.process_group import (
    CollectiveWindows,
    end_on_collective_failure,
    join_process_group,
    leave_process_group,
)
from trainer.distributed.rank_zero import decided_by_rank_zero
from trainer.distributed.world_ranks import WorldRanks
from trainer.loop.activation_offload import offloader_for
from trainer.loop.early_stopping import early_stopping_callbacks
from trainer.loop.graceful_stop import (
    GracefulStop,
    StoppedBeforeTraining,
    report_clean_stop,
    report_finished,
)
from trainer.loop.hf_trainer import FtTrainer, build_training_args
from trainer.loop.hooks import HOOKS_ENV, load_hooks, run_hooks
from trainer.loop.lr_schedules import schedule_factory
from trainer.loop.run_identity import TrackingRunRecorder, apply_tracking_env, tracking_run_id
from trainer.loop.spec_packages import require_spec_packages
from trainer.models.load import choose_precision, compute_dtype, load_model, load_tokenizer
from trainer.models.qat import convert_qat, qat_callbacks
from trainer.preflight import runner as preflight
from trainer.preflight.rehearsal import CheckpointRehearsal
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.train")


def train(cfg: TrainingConfig) -> Path:
    """Fine-tune as the spec says; returns the output directory (a plain HF/peft model)."""
    world = WorldRanks.from_env(os.environ)
    setup_console(world)
    if not cfg.deepspeed:
        keep_deepspeed_unloaded()
    hooks = load_hooks(os.environ.get(HOOKS_ENV))  # a bad entry fails before any work
    graceful = GracefulStop()  # from here to the end a stop signal never kills a rank
    lease = OutputLease(Path(cfg.output_dir))  # taken by rank 0 in _run
    try:
        with disk_full_is_a_user_error(Path(cfg.output_dir)):
            try:
                output_dir, preempted = _run(cfg, world, hooks, graceful, lease)
            except StoppedBeforeTraining:
                output_dir, preempted = Path(cfg.output_dir), True
        # _run's frame (the Trainer, the DDP wrapper) is gone now. Tearing the process group
        # down while a DDP reducer still holds it can deadlock in gloo's destructor (seen
        # on a cluster here: the rank hung after training), so collect first, then destroy.
        gc.collect()
        _cleanup()
        if not preempted:
            report_finished(graceful.last_step)
    except Exception as exc:
        end_on_collective_failure(exc)  # exit 69, the peer named; else raised as before
        raise
    finally:
        lease.release()
        graceful.release()
    if preempted:
        raise SystemExit(report_clean_stop(graceful.last_step))
    return output_dir


def _run(cfg: TrainingConfig, world: WorldRanks, hooks: list, graceful: GracefulStop,
         lease: OutputLease) -> tuple[Path, bool]:
    """setup -> train -> save; returns (output_dir, stopped early by a signal)."""
    output_dir = Path(cfg.output_dir)
    join_process_group(cfg, world)
    decided_by_rank_zero(lease.acquire)  # one writer per output_dir, before reading it
    preflight.before_model(cfg, world)  # on the job's own nodes, before anything is loaded
    # Before the model loads: which checkpoint, and whether the spec still matches it.
    record = trained_with(cfg, world.world_size) if world.is_main else None
    override = os.environ.get(OVERRIDE_ENV) == "1"
    resume, applied = agree_on_resume(
        cfg.resume_from_checkpoint, cfg.auto_resume_from_checkpoints, output_dir,
        check=lambda path, marker: check_layout(path, cfg) or check_resume(path, marker,
                                                                          record, override))
    graceful.stop_if_requested("before the data was prepared")
    require_spec_packages(cfg)
    precision = choose_precision(cfg)
    plan = plan_for(cfg, compute_dtype(cfg, precision))
    require_runnable_here(plan)
    check_dp_sizes(cfg, world)
    tokenizer = load_tokenizer(cfg)
    args = build_training_args(cfg, precision, train_rows=1, world=world, has_eval=True,
                               plan=plan)
    # Each node's local rank 0 fills the cache, the others reuse it; trainer/data/cache.py
    # makes concurrent writers (one per node, shared cache dir or not) safe.
    with args.main_process_first(desc="tokenizing"):
        data = prepare_data(cfg, tokenizer, show_progress=world.is_main)
    args = build_training_args(cfg, precision, train_rows=len(data.train), world=world,
                               has_eval=data.eval is not None, plan=plan)
    graceful.stop_if_requested("before the model was loaded")
    if cfg.deepspeed:
        prepare_deepspeed(cfg.deepspeed, cfg.load_in_4bit, cfg.load_in_8bit)
    apply_tracking_env(cfg)  # the same W&B / MLflow run across restarts of this job
    model, plan = load_model(cfg, tokenizer, precision, on_meta=loads_on_meta(plan, world),
                             device=args.device if plan else None, sharding=plan)
    if plan is not None:
        shard_model(model, plan, args.device, world)
    graceful.stop_if_requested("after the model was loaded")
    # The kernel the model really loaded with decides the packed layout (flash needs one row).
    collator = make_collator(cfg, tokenizer,
                             attn_implementation=model.config._attn_implementation)
    offload = offloader_for(cfg, model)
    trainer = FtTrainer(model=model, args=args, train_dataset=data.train,
                        eval_dataset=data.eval, data_collator=collator,
                        processing_class=tokenizer, sharding=plan, activation_offload=offload,
                        schedule=schedule_factory(cfg), lr_groups=cfg.lr_groups,
                        callbacks=[CompleteCheckpointMarker(cfg.save_total_limit, record),
                                   NewLearningRate(applied or {}), graceful,
                                   TrackingRunRecorder(tracking_run_id(cfg, os.environ)),
                                   *([SaveAfterFirstStep()] if cfg.save_first_step else []),
                                   *qat_callbacks(cfg.qat, model),
                                   CollectiveWindows(cfg), *early_stopping_callbacks(cfg)])
    trainer.add_callback(CheckpointRehearsal(trainer, cfg, world))  # pre-flight, before step 1
    run_hooks(hooks, trainer)
    graceful.begin_training()
    result = trainer.train(resume_from_checkpoint=resume)
    if graceful.stopped:
        log.warning("stopped early at step %d; checkpoint saved, resume continues from it",
                    trainer.state.global_step)
        graceful.last_step = trainer.state.global_step
        return output_dir, True
    if cfg.qat is not None:
        convert_qat(model, cfg.qat)  # the saved model is plain transformers again
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        facts = _model_facts(model, cfg, precision)
        if offload is not None:
            facts["activation_offloading"] = offload.facts()
        _write_summary(output_dir, result.metrics, data.stats, trainer.state, world, facts)
        mark_complete(output_dir, trainer.state.global_step)
    return output_dir, False


def _model_facts(model, cfg: TrainingConfig, precision) -> dict:
    # `dtype` is the model's first floating parameter (fp32 norms under QLoRA, for
    # instance); `compute_dtype` is what the matmuls run in.
    return {"attn_implementation": model.config._attn_implementation,
            "compute_dtype": str(compute_dtype(cfg, precision)),
            "loaded_in_4bit": bool(getattr(model, "is_loaded_in_4bit", False)),
            "loaded_in_8bit": bool(getattr(model, "is_loaded_in_8bit", False)),
            "dtype": str(model.dtype)}


def _write_summary(output_dir: Path, metrics: dict, data_stats: dict, state, world: WorldRanks,
                   model_facts: dict) -> None:
    """What a user (or a test) wants to know after a run, beside the model files."""
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    summary = {"global_step": state.global_step, "train": metrics, "data": data_stats,
               "world_size": world.world_size, "model": model_facts,
               "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
               "log_history": state.log_history}
    (output_dir / "ft-train-summary.json").write_text(json.dumps(summary, indent=2,
                                                                 default=str))


def _cleanup() -> None:
    leave_process_group()
