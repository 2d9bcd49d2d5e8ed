"""Gemma2 (no sdpa attention: it softcaps its attention logits) with and without packing on a
machine with no flash-attn: ft picks a kernel the architecture has instead of transformers'
raw ValueError, packed samples still do not see each other, and an explicit sdpa is a
named error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.fixtures_tiny import make_cfg
from tests.train_helpers import summary
from trainer.torch_free.errors import UserError


@pytest.fixture(scope="module")
def gemma2_dir(tmp_path_factory) -> Path:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from trainer.models.tiny import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny-gemma2")
    tokenizer = build_tiny_tokenizer()
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, max_position_embeddings=512,
                          bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    tokenizer.save_pretrained(out)
    Gemma2ForCausalLM(config).save_pretrained(out)
    return out


def _cfg(model_dir: Path, **fields):
    return make_cfg(model_dir, [{"path": "data.jsonl", "type": "alpaca"}], **fields)


def test_a_model_without_sdpa_gets_eager_on_the_cpu_unless_sdpa_is_asked_for(gemma2_dir,
                                                                          tiny_model_dir):
    from trainer.models.load import choose_attention

    assert choose_attention(_cfg(gemma2_dir, sample_packing=True)) == "eager"
    assert choose_attention(_cfg(gemma2_dir, flash_attention=True)) == "eager"  # not installed
    assert choose_attention(_cfg(tiny_model_dir, sample_packing=True)) == "sdpa"  # Llama has it
    with pytest.raises(UserError, match="`attn_implementation: sdpa`: Gemma2ForCausalLM has no "
                       "sdpa attention; use `attn_implementation: flex_attention`"):
        choose_attention(_cfg(gemma2_dir, attn_implementation="sdpa"))


def test_packed_gemma2_rows_under_eager_keep_samples_apart(gemma2_dir):
    """The logits of two samples packed in one row equal each sample's logits alone."""
    from transformers import AutoModelForCausalLM

    from trainer.data.collate import Collator

    model = AutoModelForCausalLM.from_pretrained(gemma2_dir, attn_implementation="eager")
    model.eval()
    first, second = list(range(10, 22)), list(range(40, 49))
    row = {"input_ids": first + second, "labels": first + second,
           "position_ids": list(range(len(first))) + list(range(len(second)))}
    batch = Collator(0, flatten_packed=False, pad_to=None)([row])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits  # as in training: no cache
        alone = [model(input_ids=torch.tensor([ids])).logits for ids in (first, second)]
    torch.testing.assert_close(packed[0, :len(first)], alone[0][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(packed[0, len(first):], alone[1][0], atol=1e-5, rtol=1e-4)


def test_gemma2_packing_corpus_config_trains_on_the_cpu(tmp_path, gemma2_dir):
    spec = tiny_corpus_copy("gemma2-packing.yml", tmp_path, gemma2_dir, max_steps=3,
                            sequence_len=256)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Gemma2ForCausalLM has no sdpa attention: using eager" in result.stderr
    facts = summary(tmp_path / "out")
    assert facts["global_step"] == 3 and facts["model"]["attn_implementation"] == "eager"


def test_on_a_gpu_a_model_without_sdpa_gets_flex_attention(gemma2_dir):
    from trainer.kernels.attention_varlen import NAME as VARLEN_ATTN
    from trainer.models.attention_support import fit_to_model

    cfg = _cfg(gemma2_dir, sample_packing=True)
    assert fit_to_model(cfg, VARLEN_ATTN, on_gpu=True) == "flex_attention"
    assert fit_to_model(cfg, "sdpa", on_gpu=True) == "flex_attention"
    assert fit_to_model(cfg, "flash_attention_2", on_gpu=True) == "flash_attention_2"
