"""`early_stopping_patience`, `save_strategy: best`, `metric_for_best_model`,
`greater_is_better`, `load_best_model_at_end`: a real run stops after `patience`
evaluations without improvement, keeps only the best checkpoint and ends with its weights;
the combinations transformers would refuse at train time are errors at validate time."""

from __future__ import annotations

import warnings

import pytest
from safetensors.torch import load_file

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.train_helpers import summary
from trainer.torch_free.errors import SpecError

BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"
EVAL = "val_set_size: 0.1\neval_steps: 5\n"


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "spec.yaml")
    return [f"{p.path}: {p.message}" for p in info.value.problems]


@pytest.mark.parametrize(("keys", "says"), [
    ("early_stopping_patience: 3\nsave_strategy: best\nmetric_for_best_model: eval_loss\n",
     "early_stopping_patience: `early_stopping_patience` compares evaluations, but there is "
     "no eval data; set `val_set_size` (e.g. 0.05) or `test_datasets`"),
    ("val_set_size: 0.1\nearly_stopping_patience: 3\nsave_strategy: best\n"
     "metric_for_best_model: eval_loss\n",
     "early_stopping_patience: `early_stopping_patience` compares evaluations, but none is "
     "scheduled; set `eval_steps` or `evals_per_epoch`"),
    (EVAL + "save_strategy: best\n",
     "save_strategy: `save_strategy: best` needs `metric_for_best_model` (e.g. eval_loss)"),
    (EVAL + "early_stopping_patience: 2\nsave_steps: 7\n",
     "early_stopping_patience: `early_stopping_patience` loads the best checkpoint, so "
     "checkpoints must be saved at evaluations: set `save_strategy: best`, or `save_steps` a "
     "multiple of `eval_steps`"),
    (EVAL + "load_best_model_at_end: true\n", "load_best_model_at_end: `load_best_model_at_end`"
     " loads the best checkpoint"),
])
def test_what_transformers_would_refuse_at_train_time_is_named_at_validate_time(keys, says):
    assert any(p.startswith(says) for p in _problems(BASE + keys)), _problems(BASE + keys)


def test_valid_combinations_pass_and_an_unread_metric_is_warned():
    for keys in ("early_stopping_patience: 2\nsave_steps: 10\n",
                 "save_strategy: best\nmetric_for_best_model: eval_loss\n",
                 "early_stopping_patience: 2\nload_best_model_at_end: false\n"):
        parse_spec(BASE + EVAL + keys, "spec.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(BASE + EVAL + "metric_for_best_model: eval_loss\n", "spec.yaml")
    assert any(str(w.message).startswith("`metric_for_best_model` is ignored: nothing picks a "
                                         "best checkpoint") for w in caught)


@pytest.mark.parametrize(("keys", "loads_best", "metric"), [
    ("early_stopping_patience: 2\nsave_steps: 10\n", True, "eval_loss"),
    ("early_stopping_patience: 2\nsave_steps: 10\nload_best_model_at_end: false\n", False,
     "eval_loss"),
    ("save_strategy: best\nmetric_for_best_model: eval_accuracy\n", False, "eval_accuracy"),
    ("save_steps: 10\n", False, None)])
def test_early_stopping_loads_the_best_model_unless_told_not_to(keys, loads_best, metric,
                                                                tmp_path):
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import build_training_args
    from trainer.models.load import choose_precision

    cfg = parse_spec(BASE + EVAL + keys + f"output_dir: {tmp_path}\n", "spec.yaml").training
    args = build_training_args(cfg, choose_precision(cfg), train_rows=40, world=WorldRanks(),
                               has_eval=True, plan=None)
    assert (args.load_best_model_at_end, args.metric_for_best_model) == (loads_best, metric)


def test_a_run_stops_after_patience_and_ends_with_the_best_checkpoints_weights(
        tmp_path, tiny_model_dir):
    """The loss falls from the first evaluation; `greater_is_better: true` makes that first one
    the best, so the next two (patience 2) fail to improve and training stops at step 3 of 20
    with checkpoint-1 the only checkpoint and the final model."""
    spec = tiny_corpus_copy("early-stopping-best.yml", tmp_path, tiny_model_dir, max_steps=20,
                            eval_steps=1, early_stopping_patience=2, greater_is_better=True,
                            learning_rate=0.02)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    facts = summary(out)
    losses = [e["eval_loss"] for e in facts["log_history"] if "eval_loss" in e]
    assert facts["global_step"] == 3 and len(losses) == 3
    assert max(losses[1:]) < losses[0]  # no later evaluation beat the first
    assert "early stopping at step 3 of 20: eval_loss did not improve in 2 evaluations" \
        in result.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    best = load_file(out / "checkpoint-1" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert best.keys() == final.keys()
    assert all((best[k] == final[k]).all() for k in best)


def test_rotation_keeps_the_best_checkpoint_beyond_the_limit(tmp_path):
    from tests.test_checkpoint_manifest import _checkpoint
    from trainer.checkpoint.rotation import rotate

    for step in (2, 4, 6, 8):
        _checkpoint(tmp_path, step)
    best = str(tmp_path / "checkpoint-2")
    deleted = rotate(tmp_path, 2, tmp_path / "checkpoint-8", best=best)
    assert [p.name for p in deleted] == ["checkpoint-4", "checkpoint-6"]
    rotate(tmp_path, 1, tmp_path / "checkpoint-8", best=best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-8"]


def test_two_fsdp_ranks_stop_together_and_save_the_best_checkpoints_weights(tmp_path,
                                                                            tiny_model_dir):
    """Two emulated nodes, FSDP2: the best checkpoint is loaded through the sharded path
    (transformers' FSDP load of ft's whole-adapter checkpoint), which one process never
    exercises; worth the launch's time."""
    import os

    from tests.train_helpers import free_port, shared_volumes

    spec = tiny_corpus_copy("early-stopping-best.yml", tmp_path, tiny_model_dir, max_steps=20,
                            eval_steps=1, early_stopping_patience=2, greater_is_better=True,
                            learning_rate=0.02, sequence_len=256,
                            fsdp=["full_shard", "auto_wrap"], fsdp_config={"fsdp_version": 2},
                            launch={"name": "early-stop", "nodes": 2, "gpus_per_node": 0,
                                    "cpus_per_node": 1, "cluster": "tcp",
                                    "volumes": shared_volumes(tmp_path)})
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=tmp_path, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    out = tmp_path / "out"
    assert summary(out)["world_size"] == 2 and summary(out)["global_step"] == 3
    best = load_file(out / "checkpoint-1" / "adapter_model.safetensors")
    final = load_file(out / "adapter_model.safetensors")
    assert best.keys() == final.keys() and all((best[k] == final[k]).all() for k in best)
