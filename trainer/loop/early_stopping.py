"""Keeping the best checkpoint and stopping early, as Axolotl spells it.

`early_stopping_patience: N` stops after N evaluations in a row that do not improve
`metric_for_best_model` (default eval_loss; `greater_is_better` as transformers derives it
from the name unless set). With it, `load_best_model_at_end` defaults to true (Axolotl's
default too), so the model written to `output_dir` is the best checkpoint's, not the last
step's. `save_strategy: best` writes a checkpoint only when the metric improves.
ft's checkpoint rotation never deletes the best checkpoint (trainer/checkpoint/rotation.py).
Validation (orchestrator/spec/schedule_data_rules.py) makes sure there is eval data and that
the save and eval schedules line up, which transformers otherwise refuses at train time.
"""

from __future__ import annotations

import logging

from transformers import EarlyStoppingCallback, TrainerCallback

from trainer.torch_free.best_checkpoint import loads_best_model, picks_best
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.train")


def best_model_args(cfg: TrainingConfig, has_eval: bool) -> dict:
    """TrainingArguments for picking the best checkpoint (none without eval data)."""
    if not has_eval:
        return {}
    metric = cfg.metric_for_best_model or ("eval_loss" if picks_best(cfg) else None)
    return {"load_best_model_at_end": loads_best_model(cfg), "metric_for_best_model": metric,
            "greater_is_better": cfg.greater_is_better}


class SaidEarlyStopping(EarlyStoppingCallback):
    """transformers' early stopping, which ends the run without a word: this one says why."""

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if control.should_training_stop and state.global_step < state.max_steps:
            log.info("early stopping at step %d of %d: %s did not improve in %d evaluations "
                     "(best %s at %s)", state.global_step, state.max_steps,
                     args.metric_for_best_model, self.early_stopping_patience,
                     state.best_metric, state.best_model_checkpoint)
        return control


def early_stopping_callbacks(cfg: TrainingConfig) -> list[TrainerCallback]:
    if not cfg.early_stopping_patience:
        return []
    return [SaidEarlyStopping(early_stopping_patience=cfg.early_stopping_patience)]
