"""Shared by the model- and step-knob tests: parsing a spec quietly, and training a corpus
config 3 steps on a tiny model with the model, data and output swapped."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.corpus_tiny import tiny_corpus_copy, tiny_dataset
from trainer.torch_free.errors import SpecError

CORPUS = REPO / "tests/fixtures/axolotl/corpus"
BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"


def parse(text: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml", **kwargs)


def problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(text, **kwargs)
    return [p.message for p in info.value.problems]


def notes(text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(text, "spec.yaml")
    return [str(w.message) for w in caught]


def corpus_run(name: str, tmp_path: Path, model_dir: Path, data: str = "alpaca.jsonl",
                drop=(), env: dict | None = None, **changes) -> Path:
    """Train the corpus config 3 steps with the model, data and output swapped (and `drop`:
    keys the tiny tokenizer or a CPU cannot serve); returns the output dir, with the run's
    stderr beside it (stderr.txt)."""
    small = {"datasets": tiny_dataset(data), "max_steps": 3, "sequence_len": 256,
             "micro_batch_size": 2, "gradient_accumulation_steps": 1, "warmup_ratio": None,
             "warmup_steps": 0, "learning_rate": 0.01, "bf16": False, "logging_steps": 1}
    path = tiny_corpus_copy(name, tmp_path, model_dir, drop=drop, **{**small, **changes})
    result = run_ft("train", str(path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "stderr.txt").write_text(result.stderr)
    return tmp_path / "out"


def tiny_family(kind: str, root: Path, tiny_model_dir: Path) -> Path:
    """A 2-layer model of another family with the tiny tokenizer, built offline."""
    import transformers

    out = root / kind
    if (out / "config.json").is_file():
        return out
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=16, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if kind == "gemma3":
        config = transformers.Gemma3TextConfig(**common, sliding_window=64)
        model = transformers.Gemma3ForCausalLM(config)
    else:
        config = transformers.MixtralConfig(**common, num_local_experts=4,
                                            num_experts_per_tok=2)
        model = transformers.MixtralForCausalLM(config)
    torch.manual_seed(0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
