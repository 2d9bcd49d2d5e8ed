"""The transformers Trainer with ft's additions: FSDP2 on CPU, plain HF/peft saves of a
sharded model, and one metrics line per logging step, with its step, from rank 0 only."""

from __future__ import annotations

import math
from pathlib import Path

from transformers import Trainer
from transformers.trainer_callback import PrinterCallback

from trainer.distributed.fsdp import ShardingPlan, gather_state_dict
from trainer.distributed.sharded_export import export_full_model


class FtTrainer(Trainer):
    """Saves a sharded model as plain HF/peft files that load anywhere.

    transformers' own FSDP save gathers the whole model, 4-bit base included, onto rank 0
    for every checkpoint; an adapter only needs its trainable tensors, gathered to full
    shape (a saved lora_B must never be one rank's slice). A full fine-tune writes its
    model once, at the end, a tensor at a time in the training dtype
    (trainer/distributed/sharded_export.py). Resumable training state is written by accelerate as
    sharded checkpoints.

    `sharding` is the plan trainer/distributed/fsdp.py wrapped the model with (None: not sharded).
    """

    def __init__(self, *args, sharding: ShardingPlan | None = None, **kwargs) -> None:
        self.sharding = sharding  # read while the parent builds its accelerator
        super().__init__(*args, **kwargs)
        # transformers' plain printer (used without a progress bar) prints on every node's
        # local rank 0: one copy per node of every metrics line.
        if self.pop_callback(PrinterCallback) is not None:
            self.add_callback(MainRankPrinter)

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
