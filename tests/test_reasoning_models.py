"""Reasoning models, model and tokenizer side: gpt-oss's MXFP4 checkpoint read dequantized
(`model_quantization_config: Mxfp4Config`), its harmony chat format through the tokenizer's
own template, and `chat_template_kwargs` (Qwen3's `enable_thinking`, harmony's
`reasoning_effort`) reaching the rendered text. docs/training.md states these."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from tests import fixtures_tiny
from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.fixtures_tiny import make_cfg, trained_runs
from tests.tiny_gpt_oss import build_tiny_gpt_oss
from tests.train_helpers import summary
from trainer.data.formats import RowEncoder
from trainer.torch_free.errors import SpecError

tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer
CORPUS = Path(__file__).parent / "fixtures/axolotl/corpus"
MXFP4_KEYS = ("model_quantization_config: Mxfp4Config\n"
              "model_quantization_config_kwargs: {dequantize: true}\n")


@pytest.fixture(scope="module")
def tiny_gpt_oss(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny-gpt-oss")
    return out, build_tiny_gpt_oss(out)


def _parse(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml")


def _spec(model: Path, extra: str) -> str:
    return f"base_model: {model}\ndatasets:\n  - path: x.jsonl\n    type: chat_template\n" + extra


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_mxfp4_experts_load_as_the_values_the_checkpoint_holds(tiny_gpt_oss, dtype):
    """In the training dtype (fp32 is the CPU's, bf16 a GPU's): E2M1 values times a power
    of two are exact in both."""
    import torch

    from trainer.models.load import Precision, load_model, load_tokenizer

    model_dir, expected = tiny_gpt_oss
    cfg = _parse(_spec(model_dir, MXFP4_KEYS + "adapter: lora\nlora_target_modules: "
                       "[q_proj, v_proj]\n")).training
    precision = Precision(getattr(torch, dtype), dtype == "bfloat16", False, None)
    model, _ = load_model(cfg, load_tokenizer(cfg), precision)
    weights = dict(model.named_parameters())
    assert len(expected) == 4  # gate_up_proj and down_proj of both layers
    for name, values in expected.items():
        loaded = weights[f"base_model.model.{name}"]
        assert loaded.dtype == getattr(torch, dtype)  # not 4-bit codes
        assert torch.equal(loaded.detach(), values.to(loaded.dtype)), name
    # A plain (trainable) model: no MXFP4 modules or quantizer left behind.
    assert not getattr(model.base_model.model, "is_quantized", False)
    assert "quantization_config" not in model.base_model.model.config.to_dict()
    experts = model.base_model.model.model.layers[0].mlp.experts
    assert type(experts).__name__ == "GptOssExperts"


def test_an_mxfp4_checkpoint_without_the_keys_is_dequantized_with_a_warning(tiny_gpt_oss,
                                                                            caplog):
    import torch

    from trainer.models.load import choose_precision, load_model, load_tokenizer

    model_dir, expected = tiny_gpt_oss
    cfg = _parse(_spec(model_dir, "")).training
    with caplog.at_level("WARNING", logger="ft.model"):
        model, _ = load_model(cfg, load_tokenizer(cfg), choose_precision(cfg))
    assert "is an MXFP4 checkpoint: its experts are dequantized while loading" in caplog.text
    weights = dict(model.named_parameters())
    assert all(torch.equal(weights[name].detach(), values.to(weights[name].dtype))
               for name, values in expected.items())


def test_the_mxfp4_quantizer_of_the_test_keeps_weights_within_mxfp4_precision():
    import torch

    from tests.tiny_gpt_oss import mxfp4_quantize

    torch.manual_seed(0)
    weight = torch.randn(4, 64, 128) * 0.02
    blocks, scales, decoded = mxfp4_quantize(weight)
    assert blocks.shape == (4, 128, 2, 16) and scales.shape == (4, 128, 2)
    # Per 32 values the error is at most half the widest E2M1 step (2) times the scale.
    scale = torch.exp2(scales.float() - 127).repeat_interleave(32, -1).transpose(1, 2)
    assert ((decoded - weight).abs() <= scale + 1e-12).all()
    relative = (decoded - weight).norm() / weight.norm()
    assert 0.05 < relative < 0.15, relative  # 0.119 here


@pytest.mark.parametrize(("extra", "message"), [
    ("model_quantization_config: Mxfp4Config\n",
     "MXFP4 weights kept quantized cannot be trained"),
    ("model_quantization_config: Mxfp4Config\nmodel_quantization_config_kwargs: "
     "{dequantize: false}\n", "set `model_quantization_config_kwargs: {dequantize: true}`"),
    ("model_quantization_config: FineGrainedFP8Config\n",
     "`model_quantization_config: FineGrainedFP8Config` (FP8 checkpoints read through "
     "transformers' fine-grained FP8 kernels) is not supported"),
    (MXFP4_KEYS + "adapter: qlora\nload_in_4bit: true\nlora_target_linear: true\n",
     "cannot be used together: the checkpoint is read dequantized"),
    (MXFP4_KEYS + "fsdp_config: {cpu_ram_efficient_loading: true}\n",
     "`cpu_ram_efficient_loading` with an MXFP4 checkpoint"),
    ("model_quantization_config: Mxfp4Config\nmodel_quantization_config_kwargs: "
     "{dequantize: true, group_size: 32}\n", "unknown Mxfp4Config argument(s) group_size"),
    ("model_quantization_config_kwargs: {dequantize: true}\n",
     "`model_quantization_config_kwargs` needs `model_quantization_config: Mxfp4Config`"),
])
def test_what_mxfp4_loading_cannot_honour_is_refused_by_name(extra, message):
    with pytest.raises(SpecError) as info:
        _parse(_spec("openai/gpt-oss-20b", extra))
    assert any(message in p.message for p in info.value.problems), info.value.problems


HARMONY_SYSTEM = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n\nReasoning: high\n\n# Valid channels: analysis, commentary, "
    "final. Channel must be included for every message.<|end|>")
THINKING_CHAT = [
    {"role": "system", "content": "Answer in one sentence."},
    {"role": "user", "content": "Tell me about the ocean."},
    {"role": "assistant", "content": "It is vast.", "thinking": "Old reasoning."},
    {"role": "user", "content": "And snow?"},
    {"role": "assistant", "content": "Snow is frozen water.",
     "thinking": "The user asks about snow."},
]


def test_harmony_template_renders_thinking_in_the_analysis_channel(tiny_gpt_oss):
    from transformers import AutoTokenizer

    model_dir, _ = tiny_gpt_oss
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cfg = make_cfg(model_dir, [{"path": "x", "type": "chat_template",
                               "message_property_mappings": {"thinking": "thinking"}}],
                   chat_template="tokenizer_default",
                   chat_template_kwargs={"reasoning_effort": "high"},
                   eot_tokens=["<|end|>"])  # not EOS (<|return|>): trains only when named
    encoder = RowEncoder(cfg.datasets[0], cfg, tokenizer)
    out = encoder({"messages": [THINKING_CHAT]})
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert tokenizer.decode(ids) == (
        HARMONY_SYSTEM +
        "<|start|>developer<|message|># Instructions\n\nAnswer in one sentence.<|end|>"
        "<|start|>user<|message|>Tell me about the ocean.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>It is vast.<|end|>"
        "<|start|>user<|message|>And snow?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>The user asks about snow.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Snow is frozen water.<|return|>")
    runs = trained_runs(tokenizer, ids, labels)
    # As in Axolotl, a turn trains what changes when its content alone is swapped for a
    # stand-in: for the turn that thinks, its analysis message and the final channel's header
    # with the answer (the earlier turn's thinking is not rendered, so nothing of it trains).
    assert runs[0] == "It is vast.<|end|>" and runs[-1] == (
        "analysis<|message|>The user asks about snow.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Snow is frozen water.<|return|>")


def test_gpt_oss_corpus_config_trains_on_a_tiny_gpt_oss(tiny_gpt_oss, tmp_path):
    """Only the model, data, output and the sizes that make it a CPU test are swapped
    (4096-token packed rows with 8 accumulation steps took 9 minutes on two busy cores);
    then merge-lora and inference on the result."""
    model_dir, expected = tiny_gpt_oss
    path = tiny_corpus_copy("gpt-oss-lora.yml", tmp_path, model_dir, data="chat.jsonl",
                            max_steps=3, sequence_len=256, gradient_accumulation_steps=1)
    result = run_ft("train", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MXFP4 checkpoint: experts dequantized while loading" in result.stderr
    assert "GptOssForCausalLM has no sdpa attention: using eager" in result.stderr
    facts = summary(tmp_path / "out")
    assert facts["global_step"] == 3
    assert facts["model"]["attn_implementation"] == "eager"
    _merged_model_has_the_dequantized_experts(path, expected)


def _merged_model_has_the_dequantized_experts(path: Path, expected: dict) -> None:
    """merge-lora folds the adapter into the dequantized base: a plain checkpoint whose
    experts hold the MXFP4 values, which inference then loads and runs."""
    import json

    import torch
    from safetensors.torch import load_file

    from trainer.models.inference import generate, load_for_inference
    from trainer.models.merge_lora import merge_lora

    cfg = _parse(path.read_text()).training
    merged = merge_lora(cfg, on_cpu=True)
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    weights = load_file(merged / "model.safetensors")
    for name, values in expected.items():
        assert torch.equal(weights[name].float(), values.float()), name
    model, tokenizer = load_for_inference(cfg, use_merged=True)
    assert isinstance(generate(model, tokenizer, "And snow?", max_new_tokens=2), str)


# Qwen3's format for an answer: <think> block first, empty when the turn did not think.
QWEN3_STYLE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% if enable_thinking is defined and not enable_thinking"
    " %}<think>\n\n</think>\n\n{% else %}<think>\nthinking</think>\n\n{% endif %}{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}")


@pytest.mark.parametrize(("enable", "block"), [(False, "<think>\n\n</think>\n\n"),
                                                (True, "<think>\nthinking</think>\n\n")])
def test_enable_thinking_reaches_the_rendered_chat(tiny_tokenizer, tiny_model_dir, enable,
                                                   block):
    cfg = make_cfg(tiny_model_dir, [{"path": "x", "type": "chat_template"}],
                   chat_template=QWEN3_STYLE, chat_template_kwargs={"enable_thinking": enable},
                   eot_tokens=["<|im_end|>"])  # not this tokenizer's EOS: trains when named
    row = {"messages": [{"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello there."}]}
    out = RowEncoder(cfg.datasets[0], cfg, tiny_tokenizer)({"messages": [row["messages"]]})
    ids, labels = out["input_ids"][0], out["labels"][0]
    assert f"<|im_start|>assistant\n{block}Hello there.<|im_end|>" in tiny_tokenizer.decode(ids)
    assert trained_runs(tiny_tokenizer, ids, labels) == ["Hello there.<|im_end|>"]
