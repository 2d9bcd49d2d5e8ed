"""Loss lines and steps, from the log of a real 2-node `ft train` run (transformers 5.23.0)."""

from __future__ import annotations

from orchestrator.jobs.progress import Progress, parse_metrics
from tests.fixtures.tool_outputs.replay import text

OUT = text("ft-train-transformers-5.23.0-slurm-22.05.8-2node.out.txt")
ERR = text("ft-train-transformers-5.23.0-slurm-22.05.8-2node.err.txt")


def test_parse_the_transformers_log_dict() -> None:
    first = OUT.splitlines()[0]
    assert parse_metrics(first) == {"loss": 6.247, "grad_norm": 0.2274, "learning_rate": 0.0,
                                    "epoch": 0.09091}
    assert parse_metrics("trained model in outputs/tiny") is None
    assert parse_metrics("{'not': 'metrics'}") is None
    assert parse_metrics("[rank0] {'loss': 2.5, 'step': 7, 'note': 'x'}") == {"loss": 2.5,
                                                                            "step": 7.0}


def test_steps_estimated_from_epochs_and_repeats_dropped() -> None:
    progress = Progress(total_steps=30, logging_steps=5)
    shown = [progress.summary(m) for line in OUT.splitlines() + ERR.splitlines()
             if (m := progress.feed(line))]
    # Each node's local rank 0 printed every line; each logging step is shown once.
    assert len(shown) == len(set(shown)) == 11
    assert shown[0].startswith("[........................] ?/30  loss 6.247")
    assert shown[2].startswith("[########................] ~10/30  loss 6.089")
    assert shown[-1] == "[########################] 30/30  train_loss 6.046  epoch 2.727"
    assert [step for step, _ in progress.history] == [0, 0, 10, 15, 20, 25, 30]
    losses = [loss for _, loss in progress.history]
    assert losses[-1] < losses[0], "the tiny run learns"


def test_a_step_key_or_the_training_bar_wins_over_the_estimate() -> None:
    progress = Progress(total_steps=30, logging_steps=5)
    progress.feed("Tokenizing: 100%|##| 120/120 [00:00<00:00]")  # not the training bar
    assert progress.bar() == "[........................] ?/30"
    progress.feed(" 40%|####      | 12/30 [00:05<00:07,  2.4it/s]")
    assert progress.bar().endswith("] 12/30")
    progress.feed("{'loss': '1.5', 'epoch': '0.5', 'step': 15}")
    assert (progress.step, progress.step_source) == (15, "log")
    assert Progress().bar() == "step ?"
