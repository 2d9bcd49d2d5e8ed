"""The model knobs Axolotl configs carry, honoured for real: `unfrozen_parameters`,
`model_config` and `reinit_weights`. Each corpus config (tests/fixtures/axolotl/corpus/)
trains 3 steps on a tiny model of its family; the refused values say why at validate time.
The step knobs are in tests/test_step_knobs.py.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.knob_runs import BASE, corpus_run, parse, problems, tiny_family
from tests.train_helpers import summary
from trainer.torch_free.errors import UserError


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("families")
    return lambda kind: tiny_family(kind, root, tiny_model_dir)


# --- unfrozen_parameters -------------------------------------------------------------------

def test_unfrozen_parameters_train_exactly_the_matching_weights_and_rows(tmp_path,
                                                                         tiny_model_dir):
    """Full fine-tune: layer 1's MLP trains, of lm_head only rows 0-9; nothing else moves."""
    out = corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir,
                      drop=("reinit_weights", "sample_packing"),
                      unfrozen_parameters=["^model.layers.1.mlp.*", "^lm_head.weight$[:10]"],
                      weight_decay=0.0, optimizer="adamw_torch")
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {f"model.layers.1.mlp.{p}.weight" for p in ("gate_proj", "up_proj",
                                                                 "down_proj")} | {"lm_head.weight"}
    rows_moved = (before["lm_head.weight"] != after["lm_head.weight"]).any(dim=1)
    assert rows_moved[:10].all() and not rows_moved[10:].any()


def test_with_an_adapter_the_patterns_pick_the_adapter_weights(tiny_model_dir, caplog):
    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import choose_precision, load_model, load_tokenizer

    cfg = make_cfg(tiny_model_dir, [{"path": "x.jsonl", "type": "alpaca"}], adapter="lora",
                   lora_target_linear=True,
                   unfrozen_parameters=["^model.layers.0.*", "^model.vision_tower.*"])
    caplog.set_level(logging.WARNING, "ft.model")
    model, _ = load_model(cfg, load_tokenizer(cfg), choose_precision(cfg))
    assert "'^model.vision_tower.*' matches no parameter of this model" in caplog.text
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained and all(".layers.0." in n and ".lora_" in n for n in trained)
    assert len(trained) == 14  # 7 projections x (A, B) of layer 0; no base weight
    spelled = cfg.model_copy(update={"unfrozen_parameters": ["^base_model.model.lm_head"]})
    with pytest.raises(UserError, match="leaves no adapter weight to train"):
        load_model(spelled, load_tokenizer(cfg), choose_precision(cfg))


def test_gemma3_text_qlora_corpus_config_trains_its_language_model(tmp_path, family_dir):
    """Axolotl's `^model.language_model.*` names the multimodal class; on the text-only
    Gemma-3 every LoRA weight of the language model trains."""
    pytest.importorskip("bitsandbytes")
    out = corpus_run("gemma3-unfrozen-parameters.yml", tmp_path, family_dir("gemma3"),
                      data="chat.jsonl", drop=("chat_template", "eot_tokens"),
                      optimizer="adamw_torch", gradient_checkpointing=False)
    adapter = load_file(out / "adapter_model.safetensors")
    lora_b = {n: t for n, t in adapter.items() if "lora_B" in n}
    assert len(lora_b) == 14 and all(t.abs().sum() > 0 for t in lora_b.values())


def test_pattern_syntax_is_axolotls():
    from trainer.torch_free.param_patterns import NamePattern, spellings

    dot = NamePattern.parse("model.layers.1.mlp")
    assert dot.matches(("model.layers.1.mlp.up_proj.weight",))
    assert not dot.matches(("modelXlayers.1.mlp.up_proj.weight",))  # `.` is a literal dot
    assert not dot.matches(("base.model.layers.1.mlp.weight",))  # from the start of the name
    assert NamePattern.parse("model.layers.+.mlp").matches(("model.layers.12.mlp.w",))
    assert NamePattern.parse("lm_head.weight$[7]").rows == (7, 8)
    assert NamePattern.parse("embed$[:32000]").rows == (0, 32000)
    assert NamePattern.parse("embed$[5:]").rows == (5, None)
    assert spellings("base_model.model.model.layers.0.q.lora_A.default.weight", True) == (
        "base_model.model.model.layers.0.q.lora_A.default.weight",
        "model.layers.0.q.lora_A.default.weight",
        "model.language_model.layers.0.q.lora_A.default.weight")


def test_a_bad_pattern_is_refused_at_validate_time():
    (problem,) = problems(BASE + "unfrozen_parameters: ['^lm_head.weight$[5:2]', 'ok']\n")
    assert "has an empty row range" in problem
    assert "is not a valid regex" in problems(BASE + "unfrozen_parameters: ['(']\n")[0]


# --- model_config ----------------------------------------------------------------------------

def test_mixtral_model_config_reaches_the_trained_models_config(tmp_path, family_dir):
    out = corpus_run("mixtral-model-config.yml", tmp_path, family_dir("mixtral"),
                      drop=("adapter", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout",
                            "lora_target_linear", "tokenizer_type"),
                      optimizer="adamw_torch", gradient_checkpointing=False)
    config = json.loads((out / "config.json").read_text())
    assert config["output_router_logits"] is True


def test_model_config_overrides_merge_and_an_unknown_key_is_named(tiny_model_dir):
    from tests.fixtures_tiny import make_cfg
    from trainer.models.source import load_config

    ds = [{"path": "x.jsonl", "type": "alpaca"}]
    spec = parse(BASE + "model_config:\n  rope_scaling: {rope_type: linear, factor: 2.0}\n")
    assert spec.training.overrides_of_model_config == {
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    assert parse(BASE + "overrides_of_model_config: {rms_norm_eps: 0.001}\n").training \
        .overrides_of_model_config == {"rms_norm_eps": 0.001}
    cfg = make_cfg(tiny_model_dir, ds, overrides_of_model_config={
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "rms_norm_eps": 1e-5})
    config = load_config(cfg)
    assert config.rope_parameters["factor"] == 2.0 and config.rms_norm_eps == 1e-5
    assert config.rope_parameters["rope_theta"] == 10000.0  # merged, not replaced
    bad = make_cfg(tiny_model_dir, ds, overrides_of_model_config={"output_router_logit": True})
    with pytest.raises(UserError, match=r"`model_config.output_router_logit`: the LlamaConfig "
                       r"of this model has no `output_router_logit`"):
        load_config(bad)


def test_merge_lora_builds_the_base_with_the_overrides_it_trained_with(tmp_path,
                                                                       tiny_lora_run):
    from trainer.models.merge_lora import merge_lora

    spec = yaml.safe_load((tiny_lora_run / "spec.yaml").read_text())
    cfg = parse(yaml.safe_dump({k: v for k, v in spec.items() if k != "launch"})).training
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path),
                                 "overrides_of_model_config": {"rms_norm_eps": 0.001}})
    merged = merge_lora(cfg, on_cpu=True, adapter_dir=tiny_lora_run / "out")
    assert json.loads((merged / "config.json").read_text())["rms_norm_eps"] == 0.001


def test_model_kwargs_and_top_level_rope_scaling_point_at_model_config():
    assert "go under `model_config`" in problems(BASE + "model_kwargs: {a: 1}\n")[0]
    assert "set it under `model_config:`" in problems(BASE + "rope_scaling: {factor: 2}\n")[0]


# --- reinit_weights --------------------------------------------------------------------------

def test_reinit_weights_corpus_config_trains_from_fresh_seeded_weights(tmp_path,
                                                                       tiny_model_dir):
    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import choose_precision, load_model, load_tokenizer

    cfg = make_cfg(tiny_model_dir, [{"path": "x.jsonl", "type": "alpaca"}],
                   reinit_weights=True)
    fresh = [load_model(cfg, load_tokenizer(cfg), choose_precision(cfg))[0] for _ in range(2)]
    saved = load_file(tiny_model_dir / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(fresh[0].state_dict()[name], fresh[1].state_dict()[name])
    assert not torch.equal(fresh[0].state_dict()[name], saved[name])
    out = corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir, optimizer="adamw_torch")
    assert summary(out)["global_step"] == 3
    assert "4/8-bit loading quantizes" in problems(
        BASE + "reinit_weights: true\nload_in_4bit: true\nadapter: qlora\n"
        "lora_target_linear: true\n")[0]
