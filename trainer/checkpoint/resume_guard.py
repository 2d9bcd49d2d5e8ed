"""A resume must continue the training its checkpoint came from, or say that it does not.

Resuming restores the optimizer, the LR scheduler and the position in the data, all of
which mean something only for the spec they were made with: a new learning rate was
silently replaced by the saved scheduler's, a new micro batch skipped the wrong number of
rows, a changed dataset was never mentioned. So every checkpoint's marker records what it
was trained with (`trained_with`), and a resume that would change any of it stops before the
model is loaded, naming each field (old -> new) and the two ways out: start fresh in a new
`output_dir`, or `--override` (FT_RESUME_OVERRIDE=1), after which the new values apply (the
learning rate really replaces the saved scheduler's) and the log says so.

Recorded: batch geometry (micro batch, accumulation, data-parallel world size, global
batch), the LR schedule (rate, scheduler and its arguments, warmup, and the run's length
where the schedule depends on it), optimizer, datasets (the spec entries plus a checksum of
local files: sizes and crc32, sampled for large files as for checkpoints), base model,
adapter and LoRA shape, sequence length and packing. A checkpoint marked by an ft that
recorded nothing cannot be compared: the resume goes on and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.checkpoint.manifest import file_digest
from trainer.torch_free.errors import UserError
from trainer.torch_free.run_switches import RESUME_OVERRIDE_ENV as OVERRIDE_ENV
from trainer.torch_free.training import DatasetSpec, TrainingConfig

log = logging.getLogger("ft.checkpoint")

# Schedules whose rate at a step does not depend on the run's total length: for them a
# longer max_steps continues the same curve, and is no change worth refusing.
_LENGTH_FREE = {"constant", "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau"}
_PLAIN = ("base_model", "adapter", "sequence_len", "sample_packing", "micro_batch_size",
          "gradient_accumulation_steps", "optimizer", "learning_rate", "lr_scheduler",
          "lr_scheduler_kwargs", "cosine_min_lr_ratio", "warmup_steps", "warmup_ratio",
          "cosine_constant_lr_ratio", "lr_quadratic_warmup", "lr_div_factor", "lr_groups")
_LORA = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear",
         "lora_target_parameters", "peft_use_dora", "peft_use_rslora")


def trained_with(cfg: TrainingConfig, data_parallel_size: int) -> dict[str, Any]:
    """The flat record kept in each checkpoint's marker (JSON values only)."""
    record: dict[str, Any] = {name: getattr(cfg, name) for name in _PLAIN}
    if cfg.adapter:
        record.update({name: getattr(cfg, name) for name in _LORA})
    record["world_size"] = data_parallel_size
    record["global_batch_size"] = (cfg.micro_batch_size * cfg.gradient_accumulation_steps
                                   * data_parallel_size)
    if cfg.lr_scheduler not in _LENGTH_FREE or cfg.warmup_ratio:
        if cfg.max_steps:
            record["max_steps"] = cfg.max_steps
        else:
            record["num_epochs"] = cfg.num_epochs
    for index, dataset in enumerate(cfg.datasets):
        for key, value in _dataset_identity(dataset).items():
            record[f"datasets[{index}].{key}"] = value
    record["datasets"] = len(cfg.datasets)
    return json.loads(json.dumps(record, default=str))


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old, new) of every recorded field that differs, in the record's order."""
    names = list(new) + [name for name in old if name not in new]
    return [(name, old.get(name), new.get(name)) for name in names
            if old.get(name) != new.get(name)]


def check_resume(checkpoint: Path, marker: dict | None, current: dict[str, Any],
                 override: bool) -> dict[str, tuple[Any, Any]]:
    """The fields this resume changes ({} when none); a UserError when some change and
    `override` is off. Rank 0 calls it, before the model is loaded."""
    recorded = (marker or {}).get("trained_with")
    if recorded is None:
        log.warning("%s records nothing about the spec it was trained with (marked by an "
                    "older ft, or not by ft): resuming without checking for changes",
                    checkpoint)
        return {}
    changed = changes(recorded, current)
    if not changed:
        return {}
    lines = "\n".join(f"  {name}: {_show(old)} -> {_show(new)}" for name, old, new in changed)
    if not override:
        raise UserError(
            f"resuming from {checkpoint} would change what it was trained with:\n{lines}\n"
            "Its optimizer, learning-rate schedule and data position belong to the old "
            "values. Either start fresh (point `output_dir` at a new directory), or resume "
            "with the new values on purpose: `ft train --override` / `ft launch ... "
            f"--override` ({OVERRIDE_ENV}=1).")
    log.warning("resuming from %s with --override: the new values apply from here on:\n%s",
                checkpoint, lines)
    return {name: (old, new) for name, old, new in changed}


class NewLearningRate(TrainerCallback):
    """After an overridden resume, the spec's learning rate replaces the one the saved
    optimizer and scheduler brought back (the scheduler's shape, warmup and length come
    from the spec anyway: transformers rebuilds them and only their base rates are saved)."""

    def __init__(self, applied: dict[str, tuple[Any, Any]]) -> None:
        old, new = applied.get("learning_rate", (None, None))
        self.ratio = new / old if old and new else None

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None,
                       **kwargs):
        if self.ratio is None or optimizer is None or lr_scheduler is None:
            return control
        scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate's wrapper
        if not hasattr(scheduler, "base_lrs"):  # not a torch scheduler (DeepSpeed's own)
            log.warning("--override: cannot set the new learning rate on a %s; it keeps the "
                        "checkpoint's", type(scheduler).__name__)
            return control
        scheduler.base_lrs = [rate * self.ratio for rate in scheduler.base_lrs]
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=False):
            group["initial_lr"] = base
        if lambdas := getattr(scheduler, "lr_lambdas", None):
            rates = [base * fn(scheduler.last_epoch)
                     for fn, base in zip(lambdas, scheduler.base_lrs, strict=False)]
            for group, rate in zip(optimizer.param_groups, rates, strict=False):
                group["lr"] = rate
            scheduler._last_lr = rates
        return control


def _dataset_identity(dataset: DatasetSpec) -> dict[str, Any]:
    ident = dataset.model_dump(exclude_none=True, exclude_defaults=True)
    ident["path"] = dataset.path
    if content := _content_digest(Path(dataset.path).expanduser()):
        ident["content"] = content
    return ident


def _content_digest(path: Path) -> str | None:
    """A checksum of a local dataset's files (sizes and crc32, as the checkpoint manifest
    takes them); None for a Hub dataset, identified by its name and revision."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digests = [(p.relative_to(path).as_posix() if p != path else p.name, file_digest(p))
               for p in files]
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


def _show(value: Any) -> str:
    return "(not set)" if value is None else json.dumps(value)
