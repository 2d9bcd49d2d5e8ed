"""Validate-time rules for the LR schedule, best-checkpoint / early-stopping and data-order
keys: what transformers or `datasets` would refuse only at train time is said here, with
the key and the fix; a key that changes nothing in its combination is a warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

from trainer.torch_free.best_checkpoint import loads_best_model, picks_best
from trainer.torch_free.data_paths import BUILDER_OF_EXT
from trainer.torch_free.lr_schedule_choice import unused_schedule_keys
from trainer.torch_free.split_slices import split_name, split_names
from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple[str | int, ...], str]


def schedule_data_problems(t: TrainingConfig) -> Iterator[Rule]:
    yield from _split_problems(t)
    yield from _best_checkpoint_problems(t)
    if (t.dataset_shard_num is None) != (t.dataset_shard_idx is None):
        key = "dataset_shard_idx" if t.dataset_shard_idx is None else "dataset_shard_num"
        yield (key,), "`dataset_shard_num` and `dataset_shard_idx` go together; set both"
    elif t.dataset_shard_num is not None and t.dataset_shard_idx >= t.dataset_shard_num:
        yield ("dataset_shard_idx",), (f"shard index {t.dataset_shard_idx} is out of range: "
                                       f"shards are numbered 0..{t.dataset_shard_num - 1}")


def schedule_data_notes(t: TrainingConfig) -> list[str]:
    notes = [f"`{key}` is ignored: {why}" for key, why in unused_schedule_keys(
        t.lr_scheduler, t.cosine_min_lr_ratio, t.cosine_constant_lr_ratio,
        t.lr_quadratic_warmup, t.lr_div_factor)]
    if t.curriculum_sampling and len(t.datasets) > 1 and t.shuffle_merged_datasets:
        notes.append("`curriculum_sampling` with several datasets: their rows are shuffled "
                     "together after merging (as in Axolotl); set `shuffle_merged_datasets: "
                     "false` to train in dataset order")
    if not picks_best(t):
        notes += [f"`{key}` is ignored: nothing picks a best checkpoint (set "
                  "`early_stopping_patience`, `load_best_model_at_end: true` or "
                  "`save_strategy: best`)"
                  for key in ("metric_for_best_model", "greater_is_better")
                  if getattr(t, key) is not None]
    return notes


def _split_problems(t: TrainingConfig) -> Iterator[Rule]:
    for section in ("datasets", "test_datasets"):
        for index, ds in enumerate(getattr(t, section) or []):
            one_file = PurePosixPath(ds.path).suffix.lower() in BUILDER_OF_EXT
            try:
                split_name(ds.split) if one_file else split_names(ds.split)
            except ValueError as exc:
                yield (section, index, "split"), str(exc)


def _best_checkpoint_problems(t: TrainingConfig) -> Iterator[Rule]:
    asking = [k for k in ("early_stopping_patience", "load_best_model_at_end")
              if getattr(t, k)] + (["save_strategy"] if t.save_strategy == "best" else [])
    if not asking:
        return
    key = asking[0]
    if not (t.val_set_size or t.test_datasets):
        yield (key,), (f"`{key}` compares evaluations, but there is no eval data; set "
                       "`val_set_size` (e.g. 0.05) or `test_datasets`")
    elif not (t.eval_steps or t.evals_per_epoch or t.eval_strategy in ("steps", "epoch")):
        yield (key,), (f"`{key}` compares evaluations, but none is scheduled; set "
                       "`eval_steps` or `evals_per_epoch`")
    if t.save_strategy == "best" and not t.metric_for_best_model:
        yield ("save_strategy",), ("`save_strategy: best` needs `metric_for_best_model` "
                                   "(e.g. eval_loss)")
    if loads_best_model(t) and t.save_strategy != "best" and not _saves_with_evals(t):
        yield (key,), (f"`{key}` loads the best checkpoint, so checkpoints must be saved at "
                       "evaluations: set `save_strategy: best`, or `save_steps` a multiple of "
                       "`eval_steps`")


def _saves_with_evals(t: TrainingConfig) -> bool:
    if t.save_strategy == "epoch" or t.eval_strategy == "epoch":
        return t.save_strategy == "epoch" and t.eval_strategy == "epoch"
    return isinstance(t.save_steps, int) and isinstance(t.eval_steps, int) \
        and t.save_steps % t.eval_steps == 0
