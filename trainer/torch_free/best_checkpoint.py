"""Whether a run loads its best checkpoint at the end: one answer for validation and the
trainer (trainer/loop/early_stopping.py)."""

from __future__ import annotations

from trainer.torch_free.training import TrainingConfig


def loads_best_model(cfg: TrainingConfig) -> bool:
    """`load_best_model_at_end` as written, else on with `early_stopping_patience` (as in
    Axolotl): an early stop then leaves the best model, not the last steps'."""
    if cfg.load_best_model_at_end is not None:
        return cfg.load_best_model_at_end
    return bool(cfg.early_stopping_patience)


def picks_best(cfg: TrainingConfig) -> bool:
    """Whether anything reads `metric_for_best_model`."""
    return loads_best_model(cfg) or bool(cfg.early_stopping_patience) \
        or cfg.save_strategy == "best"
