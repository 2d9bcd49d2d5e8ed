"""The mixture-of-experts keys in a spec: fields, cross-field rules named by key, and the
Axolotl keys of the same feature ft does not have, refused with what ft does instead."""

from __future__ import annotations

import warnings

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from trainer.torch_free.errors import SpecError

BASE = ("base_model: org/moe\ndatasets:\n  - path: d.jsonl\n    type: alpaca\n"
        "lora_target_modules: [q_proj]\n")


def _parse(extra: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(BASE + extra, "spec.yaml")


def _problems(extra: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        _parse(extra)
    return [p.message for p in info.value.problems]


def test_moe_keys_are_fields():
    t = _parse("load_in_4bit: true\nadapter: qlora\nquantize_moe_experts: true\n"
               "experts_implementation: grouped_mm\nlora_target_parameters:\n"
               "  - mlp.experts.gate_up_proj\n").training
    assert t.quantize_moe_experts and t.experts_implementation == "grouped_mm"
    assert t.lora_target_parameters == ["mlp.experts.gate_up_proj"]


def test_quantize_moe_experts_needs_qlora_by_name():
    (msg,) = _problems("adapter: lora\nquantize_moe_experts: true\n")
    assert "needs `load_in_4bit: true` with `adapter: qlora`, or `load_in_8bit: true`" in msg
    assert _parse("load_in_8bit: true\nadapter: lora\nquantize_moe_experts: true\n"
                  ).training.quantize_moe_experts


def test_quantize_moe_experts_with_all_linear_says_where_experts_go():
    msgs = _problems("load_in_4bit: true\nadapter: qlora\nquantize_moe_experts: true\n"
                     "lora_target_linear: true\n")
    assert any("`lora_target_parameters`" in m for m in msgs)


def test_lora_on_parameters_has_no_dropout():
    (msg,) = _problems("adapter: lora\nlora_dropout: 0.05\nlora_target_parameters: "
                       "[mlp.experts.down_proj]\n")
    assert "set `lora_dropout: 0`" in msg


def test_lora_target_parameters_alone_say_where_adapters_go():
    text = BASE.replace("lora_target_modules: [q_proj]\n", "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        spec = parse_spec(text + "adapter: lora\nlora_target_parameters: [mlp.experts.down_proj]\n",
                          "spec.yaml")
    assert spec.training.lora_target_parameters == ["mlp.experts.down_proj"]


def test_axolotls_scattermoe_only_keys_name_what_ft_does_instead():
    msgs = _problems("moe_bnb_fast: true\n")
    assert any("ft stores the experts 4-bit with `quantize_moe_experts`" in m for m in msgs)
    assert not any("beyond bitsandbytes" in m for m in _problems("nonexpert_quantization: nf4\n"))


def test_axolotls_plugin_experts_kernels_fall_back_to_transformers_with_a_note():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        spec = parse_spec(BASE + "experts_implementation: scattermoe\n", "spec.yaml")
    assert spec.training.experts_implementation is None
    assert any("`experts_implementation: scattermoe` is Axolotl's kernel plugin" in str(w.message)
               for w in caught)


def test_bnb_config_kwargs_entries_ft_has_are_read_as_its_keys():
    """Axolotl's MoE examples set double quantization through `bnb_config_kwargs`."""
    t = _parse("load_in_4bit: true\nadapter: qlora\nbnb_config_kwargs:\n"
               "  bnb_4bit_use_double_quant: false\n  bnb_4bit_quant_type: fp4\n").training
    assert (t.bnb_4bit_use_double_quant, t.bnb_4bit_quant_type) == (False, "fp4")
    (msg,) = _problems("bnb_config_kwargs:\n  llm_int8_threshold: 6.0\n")
    assert msg.startswith("`bnb_config_kwargs` entries other than `bnb_4bit_quant_type`")
    (msg,) = _problems("bnb_4bit_quant_type: nf4\nbnb_config_kwargs:\n"
                       "  bnb_4bit_quant_type: fp4\n")
    assert "disagrees with `bnb_4bit_quant_type: nf4`; keep one" in msg
