"""Axolotl keys ft honours, each reaching the call that acts on it.

`revision_of_model` is proven against a real hub cache laid out on disk (two revisions of
the tiny model with different configs) that transformers reads offline, exactly as it reads
a downloaded model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.spec.load import parse_spec
from tests import fixtures_tiny

tiny_model_dir = fixtures_tiny.tiny_model_dir
REPO_ID = "ft-tests/tiny"


def _cfg(extra: str, base_model: str = REPO_ID):
    return parse_spec(f"base_model: {base_model}\ndatasets:\n  - path: d.jsonl\n"
                      f"    type: alpaca\n{extra}", "spec.yaml").training


@pytest.fixture
def hub_cache(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """`ft-tests/tiny` at `main` and at tag `v2` (v2: a model with 3 layers, not 2)."""
    import json

    root = tmp_path / "hub" / "models--ft-tests--tiny"
    for ref, commit, layers in (("main", "a" * 40, None), ("v2", "b" * 40, 3)):
        snapshot = root / "snapshots" / commit
        shutil.copytree(tiny_model_dir, snapshot)
        if layers:
            config = json.loads((snapshot / "config.json").read_text())
            config["num_hidden_layers"] = layers
            (snapshot / "config.json").write_text(json.dumps(config))
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    # huggingface_hub reads these at import time; the constants are what it consults later.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return root


def test_revision_of_model_picks_the_revision_of_weights_config_and_tokenizer(hub_cache):
    from trainer.models.source import (
        load_config,
        model_class,
        model_kwargs,
        tokenizer_source_kwargs,
    )

    main = _cfg("")
    v2 = _cfg("model_revision: v2\n")  # Axolotl's alias of revision_of_model
    assert load_config(main).num_hidden_layers == 2
    assert load_config(v2).num_hidden_layers == 3
    model = model_class(v2).from_pretrained(REPO_ID, **model_kwargs(v2))
    assert model.config.num_hidden_layers == 3
    source, kwargs = tokenizer_source_kwargs(v2)
    assert (source, kwargs["revision"]) == (REPO_ID, "v2")


def test_base_model_config_gives_the_config(hub_cache, tiny_model_dir):
    from trainer.models.source import load_config

    cfg = _cfg(f"base_model_config: {tiny_model_dir}\nrevision_of_model: v2\n")
    assert load_config(cfg).num_hidden_layers == 2  # from base_model_config, not v2


def test_model_and_tokenizer_types_name_transformers_classes(tiny_model_dir):
    import transformers

    from trainer.models.load import load_tokenizer
    from trainer.models.source import model_class, tokenizer_class
    from trainer.torch_free.errors import UserError

    cfg = _cfg("model_type: LlamaForCausalLM\ntokenizer_type: PreTrainedTokenizerFast\n",
               str(tiny_model_dir))
    assert model_class(cfg) is transformers.LlamaForCausalLM
    assert tokenizer_class(cfg) is transformers.PreTrainedTokenizerFast
    assert isinstance(load_tokenizer(cfg), transformers.PreTrainedTokenizerFast)
    with pytest.raises(UserError, match="`model_type: LlamaForSomething` is not a "
                                        "transformers class"):
        model_class(_cfg("model_type: LlamaForSomething\n"))


def test_resize_token_embeddings_to_32x_pads_the_embedding_rows(tiny_model_dir):
    from trainer.models.load import choose_precision, load_model, load_tokenizer

    cfg = _cfg("resize_token_embeddings_to_32x: true\ntokens: [zzq]\n", str(tiny_model_dir))
    tokenizer = load_tokenizer(cfg)
    model, _ = load_model(cfg, tokenizer, choose_precision(cfg))
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows % 32 == 0 and rows >= len(tokenizer)


def _args(extra: str, rows: int = 40):
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import build_training_args
    from trainer.models.load import choose_precision

    cfg = _cfg(extra + "output_dir: /tmp/ft-args-test\n")
    return build_training_args(cfg, choose_precision(cfg), train_rows=rows, world=WorldRanks(),
                               has_eval=True, plan=None)


def test_eval_and_save_strategies_batch_size_optim_args_and_prefetch():
    args = _args("val_set_size: 0.1\neval_strategy: epoch\nsave_strategy: no\n"
                 "eval_batch_size: 3\noptim_args: {amsgrad: true}\n"
                 "dataloader_num_workers: 2\ndataloader_prefetch_factor: 4\n")
    assert str(args.eval_strategy.value) == "epoch" and str(args.save_strategy.value) == "no"
    assert args.per_device_eval_batch_size == 3
    assert args.optim_args == "amsgrad=True"
    assert args.dataloader_prefetch_factor == 4
    steps = _args("val_set_size: 0.1\nevaluation_strategy: steps\nevals_per_epoch: 4\n")
    assert (str(steps.eval_strategy.value), steps.eval_steps) == ("steps", 10)


def test_prefetch_without_workers_is_refused():
    from trainer.torch_free.errors import SpecError

    with pytest.raises(SpecError, match="prefetching needs loader workers"):
        _cfg("dataloader_prefetch_factor: 4\n")


def test_the_nan_inf_log_filter_is_off_unless_the_spec_turns_it_on():
    """Off: a NaN/inf loss reaches the log as it is, and the Trainer reads no loss on the
    host after each micro-batch; Axolotl's `logging_nan_inf_filter: true` turns it on."""
    assert _args("").logging_nan_inf_filter is False
    assert _args("logging_nan_inf_filter: true\n").logging_nan_inf_filter is True
