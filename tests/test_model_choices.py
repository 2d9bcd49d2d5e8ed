"""Model-side choices that need no training run: pad token, attention kernel."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from orchestrator.spec.load import parse_spec
from trainer.models.load import FALLBACK_PAD_TOKEN, choose_attention, load_tokenizer

BASE = "datasets: [{path: d.jsonl, type: alpaca}]\n"


def _cfg(model_dir, extra: str = ""):
    return parse_spec(f"base_model: {model_dir}\n" + BASE + extra, "spec.yaml").training


def _without_pad(tiny_model_dir, tmp_path, extra_tokens=()):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_tokens(list(extra_tokens), special_tokens=True)
    tokenizer.pad_token = None
    tokenizer.unk_token = None
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_missing_pad_token_reuses_a_reserved_one(tiny_model_dir, tmp_path):
    """No new token (so no embedding resize) when the vocabulary has one to spare."""
    plain_dir = _without_pad(tiny_model_dir, tmp_path / "a")
    plain = load_tokenizer(_cfg(plain_dir))
    assert plain.pad_token == "<pad>" and plain.pad_token_id != plain.eos_token_id
    assert len(plain) == len(AutoTokenizer.from_pretrained(plain_dir))
    assert plain.pad_token != FALLBACK_PAD_TOKEN
    reserved = _without_pad(tiny_model_dir, tmp_path / "b", ["<|finetune_right_pad_id|>"])
    tokenizer = load_tokenizer(_cfg(reserved))
    assert tokenizer.pad_token == "<|finetune_right_pad_id|>"
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(reserved)), "no new token"


@pytest.mark.parametrize(("extra", "expected"), [
    ("", "sdpa"),
    ("attn_implementation: eager\n", "eager"),
    ("flash_attention: true\n", "sdpa"),  # no flash-attn (or no GPU) here
    ("sample_packing: true\n", "sdpa"),  # flex only on a GPU
    ("eager_attention: true\n", "eager"),  # Axolotl's boolean spellings, one decision
    ("sdp_attention: true\n", "sdpa"),
])
def test_attention_on_this_machine(tiny_model_dir, extra, expected):
    assert choose_attention(_cfg(tiny_model_dir, extra)) == expected


def test_flex_attention_is_what_loads_where_it_can_train(tiny_model_dir):
    import torch

    expected = "flex_attention" if torch.cuda.is_available() else "sdpa"
    assert choose_attention(_cfg(tiny_model_dir, "flex_attention: true\n")) == expected
