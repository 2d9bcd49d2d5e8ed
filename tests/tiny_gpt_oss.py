"""A tiny gpt-oss checkpoint in the MXFP4 layout, and a tokenizer with a harmony template.

The MXFP4 layout transformers reads (transformers/integrations/mxfp4.py): each expert weight
`<name>` of parameter shape (experts, in, out) is stored as `<name>_blocks`, uint8 of shape
(experts, out, in / 32, 16) holding two 4-bit E2M1 codes per byte (the low nibble first),
and `<name>_scales`, uint8 (experts, out, in / 32), one power-of-two exponent per 32 values
biased by 127; config.json carries `quantization_config: {quant_method: mxfp4}`. The
quantizer here is ours: per 32 values the scale is the smallest power of two that brings the
largest magnitude within E2M1's 6, then each value takes the nearest E2M1 code.
"""

from __future__ import annotations

import json
from pathlib import Path

# The 16 E2M1 values, indexed by their 4-bit code (sign bit last).
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
EXPERT_WEIGHTS = ("gate_up_proj", "down_proj")
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|start|>", "<|message|>",
            "<|channel|>", "<|end|>", "<|call|>", "<|constrain|>"]

# Harmony, written from the format's description: every message is
# <|start|>{role}[<|channel|>{channel}]<|message|>{text}<|end|>; the system message states
# the reasoning effort and the channels; the user's system prompt becomes the developer's
# instructions; the assistant thinks in the `analysis` channel and answers in `final`; the
# last answer of a completed conversation ends with <|return|> instead of <|end|>. Earlier
# turns' thinking is dropped (the model never sees old reasoning). No date line, so the
# rendered prompt does not change from day to day.
HARMONY_TEMPLATE = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Knowledge cutoff: 2024-06\n\nReasoning: {{ reasoning_effort | default('medium') }}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every "
    "message.<|end|>"
    "{% set ns = namespace(last_user=-1) %}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{% set ns.last_user = loop.index0 %}"
    "{% endif %}{% endfor %}"
    "{% for m in messages %}"
    "{% if m['role'] in ['system', 'developer'] %}"
    "<|start|>developer<|message|># Instructions\n\n{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'user' %}<|start|>user<|message|>{{ m['content'] }}<|end|>"
    "{% elif m['role'] == 'assistant' %}"
    "{% if m.get('thinking') and loop.index0 > ns.last_user %}"
    "<|start|>assistant<|channel|>analysis<|message|>{{ m['thinking'] }}<|end|>{% endif %}"
    "<|start|>assistant<|channel|>final<|message|>{{ m['content'] }}"
    "{% if loop.last %}<|return|>{% else %}<|end|>{% endif %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant{% endif %}"
)


def mxfp4_quantize(weight):
    """(experts, in, out) float weight -> (blocks, scales, the values they decode to)."""
    import torch

    grouped = weight.transpose(1, 2).reshape(*weight.shape[::2], -1, 32).float()
    largest = grouped.abs().amax(-1).clamp(min=2.0 ** -126)
    exponent = torch.ceil(torch.log2(largest / 6.0)).clamp(-127, 127)
    scale = torch.exp2(exponent)[..., None]
    values = torch.tensor(E2M1)
    codes = ((grouped / scale)[..., None] - values).abs().argmin(-1).to(torch.uint8)
    decoded = (values[codes.long()] * scale).reshape(*weight.shape[::2], -1).transpose(1, 2)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks, (exponent + 127).to(torch.uint8), decoded


def build_harmony_tokenizer():
    from trainer.models.tiny import build_tiny_tokenizer

    base = build_tiny_tokenizer()
    base.add_special_tokens({"additional_special_tokens": SPECIALS})
    base.bos_token, base.eos_token, base.pad_token = SPECIALS[0], "<|return|>", SPECIALS[1]
    base.chat_template = HARMONY_TEMPLATE
    return base


def build_tiny_gpt_oss(out_dir: Path, seed: int = 0) -> dict:
    """Writes the checkpoint; returns {expert parameter name: the values it must load as}."""
    import torch
    from safetensors.torch import save_file
    from transformers import GptOssConfig, GptOssForCausalLM

    tokenizer = build_harmony_tokenizer()
    config = GptOssConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=32, max_position_embeddings=2048,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"rope_type": "default", "rope_theta": 150000.0},
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = GptOssForCausalLM(config)
    tensors, expected = {}, {}
    for name, value in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in EXPERT_WEIGHTS:
            blocks, scales, decoded = mxfp4_quantize(torch.randn_like(value) * 0.02)
            tensors[f"{name}_blocks"], tensors[f"{name}_scales"] = blocks, scales
            expected[name] = decoded
        else:
            tensors[name] = value.detach().to(torch.bfloat16).contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out_dir / "model.safetensors", metadata={"format": "pt"})
    saved = {**config.to_dict(), "architectures": ["GptOssForCausalLM"], "dtype": "bfloat16",
             "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
                 "model.layers.*.self_attn", "model.layers.*.mlp.router",
                 "model.embed_tokens", "lm_head"]}}
    (out_dir / "config.json").write_text(json.dumps(saved, indent=1))
    tokenizer.save_pretrained(out_dir)
    return expected
