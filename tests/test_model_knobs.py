"""The model and step knobs Axolotl configs carry, honoured for real: `unfrozen_parameters`,
`model_config`, `reinit_weights`, `activation_offloading` (and `gradient_checkpointing:
offload | unsloth`), `torch_compile`, the torchao optimizers and `qat`. Each corpus config
(tests/fixtures/axolotl/corpus/) trains 3 steps on a tiny model of its family; the refused
values say why at validate time.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.train_helpers import TINY_DATA, summary, train_losses
from trainer.torch_free.errors import SpecError, UserError

CORPUS = REPO / "tests/fixtures/axolotl/corpus"
BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"


def _parse(text: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml", **kwargs)


def _problems(text: str, **kwargs) -> list[str]:
    with pytest.raises(SpecError) as info:
        _parse(text, **kwargs)
    return [p.message for p in info.value.problems]


def _notes(text: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(text, "spec.yaml")
    return [str(w.message) for w in caught]


def _corpus_run(name: str, tmp_path: Path, model_dir: Path, data: str = "alpaca.jsonl",
                drop=(), env: dict | None = None, **changes) -> Path:
    """Train the corpus config 3 steps with the model, data and output swapped (and `drop`:
    keys the tiny tokenizer or a CPU cannot serve); returns the output dir, with the run's
    stderr beside it (stderr.txt)."""
    spec = yaml.safe_load((CORPUS / name).read_text())
    for key in drop:
        spec.pop(key, None)
    spec["base_model"] = str(model_dir)
    spec["datasets"] = [{"path": str(TINY_DATA / data),
                         "type": "chat_template" if data == "chat.jsonl" else "alpaca"}]
    spec.update({"output_dir": str(tmp_path / "out"),
                 "dataset_prepared_path": str(tmp_path / "prep"), "max_steps": 3,
                 "sequence_len": 256, "micro_batch_size": 2, "gradient_accumulation_steps": 1,
                 "warmup_ratio": None, "warmup_steps": 0, "learning_rate": 0.01, "bf16": False,
                 "logging_steps": 1, **changes})
    spec = {k: v for k, v in spec.items() if v is not None}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_ft("train", str(path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "stderr.txt").write_text(result.stderr)
    return tmp_path / "out"


def _tiny_family(kind: str, root: Path, tiny_model_dir: Path) -> Path:
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


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("families")
    return lambda kind: _tiny_family(kind, root, tiny_model_dir)


# --- unfrozen_parameters -------------------------------------------------------------------

def test_unfrozen_parameters_train_exactly_the_matching_weights_and_rows(tmp_path,
                                                                         tiny_model_dir):
    """Full fine-tune: layer 1's MLP trains, of lm_head only rows 0-9; nothing else moves."""
    out = _corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir,
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
    out = _corpus_run("gemma3-unfrozen-parameters.yml", tmp_path, family_dir("gemma3"),
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
    (problem,) = _problems(BASE + "unfrozen_parameters: ['^lm_head.weight$[5:2]', 'ok']\n")
    assert "has an empty row range" in problem
    assert "is not a valid regex" in _problems(BASE + "unfrozen_parameters: ['(']\n")[0]


# --- model_config ----------------------------------------------------------------------------

def test_mixtral_model_config_reaches_the_trained_models_config(tmp_path, family_dir):
    out = _corpus_run("mixtral-model-config.yml", tmp_path, family_dir("mixtral"),
                      drop=("adapter", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout",
                            "lora_target_linear", "tokenizer_type"),
                      optimizer="adamw_torch", gradient_checkpointing=False)
    config = json.loads((out / "config.json").read_text())
    assert config["output_router_logits"] is True


def test_model_config_overrides_merge_and_an_unknown_key_is_named(tiny_model_dir):
    from tests.fixtures_tiny import make_cfg
    from trainer.models.source import load_config

    ds = [{"path": "x.jsonl", "type": "alpaca"}]
    spec = _parse(BASE + "model_config:\n  rope_scaling: {rope_type: linear, factor: 2.0}\n")
    assert spec.training.overrides_of_model_config == {
        "rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    assert _parse(BASE + "overrides_of_model_config: {rms_norm_eps: 0.001}\n").training \
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
    cfg = _parse(yaml.safe_dump({k: v for k, v in spec.items() if k != "launch"})).training
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path),
                                 "overrides_of_model_config": {"rms_norm_eps": 0.001}})
    merged = merge_lora(cfg, on_cpu=True, adapter_dir=tiny_lora_run / "out")
    assert json.loads((merged / "config.json").read_text())["rms_norm_eps"] == 0.001


def test_model_kwargs_and_top_level_rope_scaling_point_at_model_config():
    assert "go under `model_config`" in _problems(BASE + "model_kwargs: {a: 1}\n")[0]
    assert "set it under `model_config:`" in _problems(BASE + "rope_scaling: {factor: 2}\n")[0]


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
    out = _corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir, optimizer="adamw_torch")
    assert summary(out)["global_step"] == 3
    assert "4/8-bit loading quantizes" in _problems(
        BASE + "reinit_weights: true\nload_in_4bit: true\nadapter: qlora\n"
        "lora_target_linear: true\n")[0]


# --- activation offloading -------------------------------------------------------------------

def test_activation_offloading_lora_corpus_config_trains_through_the_hooks(tmp_path,
                                                                         tiny_model_dir):
    """The hooks saw every activation the forward saved (on a CPU run they stay where they
    are: tests/test_model_knobs_gpu.py measures the copies on a GPU)."""
    # adamw_torch: torchao's 8-bit AdamW compiles its update, a minute on a loaded CPU (the
    # QAT test trains with torchao's 4-bit one).
    out = _corpus_run("activation-offloading.yml", tmp_path, tiny_model_dir,
                      data="chat.jsonl", drop=("chat_template",), optimizer="adamw_torch")
    facts = summary(out)["model"]["activation_offloading"]
    assert facts["mode"] == "all_saved" and facts["saved_tensors"] > 100
    assert len(train_losses(out)) == 3


def _loss_and_grads(model, ids, offload):
    from trainer.loop.activation_offload import forward_context

    model.zero_grad(set_to_none=True)
    with forward_context(offload):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}


def test_offload_hooks_change_no_loss_and_no_gradient(tiny_model_dir):
    """Both modes against the same model without hooks: everything saved (no recompute),
    and reentrant recompute of each layer, whose hooks see only the layer inputs and what
    lies outside the layers."""
    from transformers import AutoModelForCausalLM

    from trainer.loop.activation_offload import ActivationOffload

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    ids = torch.randint(6, 400, (2, 48), generator=torch.Generator().manual_seed(0))
    loss, grads = _loss_and_grads(model, ids, None)
    everything = ActivationOffload(model, "all_saved")
    offloaded_loss, offloaded = _loss_and_grads(model, ids, everything)
    assert offloaded_loss == loss  # CPU: the hooks hand back the very tensors they got
    assert all(torch.equal(offloaded[n], g) for n, g in grads.items())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    inputs = ActivationOffload(model, "layer_inputs")
    recomputed_loss, recomputed = _loss_and_grads(model, ids, inputs)
    assert recomputed_loss == pytest.approx(loss, abs=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-5, atol=1e-7)
    assert 0 < inputs.counts.saved < everything.counts.saved / 3


@pytest.mark.parametrize(("spelling", "mode"), [
    ({"activation_offloading": True}, "all_saved"),
    ({"activation_offloading": "legacy"}, "all_saved"),
    ({"activation_offloading": "hidden_states"}, "layer_inputs"),
    ({"gradient_checkpointing": "offload"}, "all_saved"),
    ({"gradient_checkpointing": "unsloth"}, "layer_inputs")])
def test_each_offload_spelling_asks_for_its_mode(spelling, mode):
    from trainer.models.activation_memory import full_checkpointing
    from trainer.torch_free.activation_offloading import offload_mode

    lora = _parse(BASE + "adapter: lora\nlora_target_linear: true\n"
                  + yaml.safe_dump(spelling)).training
    assert offload_mode(lora) == mode
    assert full_checkpointing(lora) == (mode == "layer_inputs")  # offload replaces recompute
    full = _parse(BASE + yaml.safe_dump(spelling)).training
    assert offload_mode(full) == "layer_inputs" and full_checkpointing(full)


def test_full_finetune_unsloth_spelling_offloads_recomputed_layer_inputs(tmp_path,
                                                                        tiny_model_dir):
    """`gradient_checkpointing: unsloth` (once plain recompute) recomputes every layer and
    offloads its input: 2 layers x 3 steps of layer inputs and the tensors saved outside the
    layers reach the hooks, far fewer than without recompute."""
    out = _corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir, drop=("reinit_weights",),
                      optimizer="adamw_torch", gradient_checkpointing="unsloth")
    facts = summary(out)["model"]["activation_offloading"]
    assert facts["mode"] == "layer_inputs" and 6 <= facts["saved_tensors"] < 100


def test_disk_offloading_is_refused_and_an_overridden_reentrant_flag_is_said():
    assert "`activation_offloading: true` keeps them in CPU memory" in _problems(
        BASE + "activation_offloading: disk\n")[0]
    notes = _notes(BASE + "activation_offloading: true\ngradient_checkpointing_kwargs:\n"
                   "  use_reentrant: false\n")
    assert any("use_reentrant: false` is ignored" in n for n in notes)
    assert "layer offloading" in _problems(BASE + "layer_offloading: true\n")[0]


# --- torch_compile ---------------------------------------------------------------------------

def test_torch_compile_corpus_config_trains_compiled(tmp_path, tiny_model_dir):
    """Backend `eager`: torch.compile's graph capture (dynamo) without code generation;
    inductor's C++ build, and even aot_eager's autograd tracing, take minutes on a loaded
    CPU (aot_eager: 132 s here). Rows padded to one length: one graph, no recompiles. The
    corpus config's inductor is what a GPU job uses."""
    out = _corpus_run("torch-compile.yml", tmp_path, tiny_model_dir, data="chat.jsonl",
                      drop=("chat_template",), torch_compile_backend="eager",
                      optimizer="adamw_torch", sequence_len=128, pad_to_sequence_len=True,
                      env={**os.environ, "TORCH_LOGS": "dynamo"})
    assert summary(out)["global_step"] == 3
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "torchdynamo start tracing forward" in stderr  # the model ran compiled
    from trainer.loop.compile import compile_args

    cfg = _parse((CORPUS / "torch-compile.yml").read_text()).training
    assert compile_args(cfg) == {"torch_compile": True, "torch_compile_backend": "inductor",
                                 "torch_compile_mode": "default"}
    assert compile_args(_parse(BASE + "torch_compile: auto\n").training) == {
        "torch_compile": True}
    assert any("`torch_compile_mode` is ignored" in n
               for n in _notes(BASE + "torch_compile_mode: max-autotune\n"))


# --- optimizers --------------------------------------------------------------------------------

def test_every_transformers_optimizer_name_trains_or_is_refused_with_a_reason():
    from transformers.training_args import OptimizerNames

    from trainer.torch_free.optimizers import REFUSED, TRAINS

    names = {o.value for o in OptimizerNames}
    assert names <= TRAINS | set(REFUSED) and not TRAINS & set(REFUSED)
    for name in sorted(names - TRAINS):
        (problem,) = _problems(BASE + f"optimizer: {name}\n")
        assert problem == REFUSED[name]
    from trainer.torch_free.optimizers import transformers_name

    assert transformers_name(_parse(BASE + "optimizer: ao_adamw_4bit\n").training.optimizer) \
        == "adamw_torch_4bit"
    assert "unknown optimizer 'adamw_torh'" in _problems(BASE + "optimizer: adamw_torh\n")[0]


def test_a_torchao_optimizer_without_torchao_is_one_clear_line(monkeypatch):
    import importlib.util

    from trainer.loop.spec_packages import require_spec_packages

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))
    cfg = _parse(BASE + "optimizer: adamw_torch_4bit\n").training
    with pytest.raises(UserError, match=r"`optimizer: adamw_torch_4bit` need torchao"):
        require_spec_packages(cfg)


# --- QAT ---------------------------------------------------------------------------------------

def test_qat_corpus_config_trains_fake_quantized_with_the_4bit_optimizer(tmp_path,
                                                                         tiny_model_dir):
    """int8 activations x int4 weights fake-quantized while training (the forward differs
    from the plain model's), torchao's 4-bit AdamW, and a plain model saved."""
    pytest.importorskip("torchao")
    from transformers import AutoModelForCausalLM

    out = _corpus_run("qat.yml", tmp_path, tiny_model_dir, drop=("special_tokens",),
                      gradient_checkpointing=False)
    assert summary(out)["global_step"] == 3
    assert "qat: int4 weights, int8 activations fake-quantized" in \
        (tmp_path / "stderr.txt").read_text()
    model = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no torchao types
    assert type(model.model.layers[0].mlp.up_proj) is torch.nn.Linear
    saved = load_file(out / "model.safetensors")
    assert not any("fake_quant" in name for name in saved)


def test_qat_fake_quantizes_every_linear_before_the_adapter(tiny_model_dir):
    pytest.importorskip("torchao")
    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import choose_precision, load_model, load_tokenizer
    from trainer.models.qat import fake_quantized_layers

    ds = [{"path": "x.jsonl", "type": "alpaca"}]
    qat = {"weight_dtype": "int4", "activation_dtype": "int8", "group_size": 32}
    cfg = make_cfg(tiny_model_dir, ds, qat=qat, adapter="lora", lora_target_linear=True)
    model, _ = load_model(cfg, load_tokenizer(cfg), choose_precision(cfg))
    assert fake_quantized_layers(model) == 2 * 7 + 1  # the base linears and lm_head
    assert type(model.base_model.model.model.layers[0].mlp.up_proj.lora_A["default"]) \
        is torch.nn.Linear


@pytest.mark.parametrize(("qat", "gpu", "says"), [
    ("{weight_dtype: nvfp4, activation_dtype: nvfp4, group_size: 16}", "H100:80GB",
     "NVFP4 QAT is not supported: it needs a Blackwell GPU"),
    ("{weight_dtype: mxfp4, activation_dtype: mxfp4}", "H100", "`launch.gpu: H100` is not one"),
    ("{weight_dtype: nvfp4}", "B200", "ft has not run it on one yet"),
    ("{weight_dtype: int8}", None, "is not a pair torchao's QAT supports"),
    ("{weight_dtype: ternary}", None, "ternary (BitNet) QAT is not supported")])
def test_qat_that_cannot_train_is_refused_by_name(qat, gpu, says):
    launch = f"launch:\n  name: q\n  gpu: {gpu}\n" if gpu else ""
    problems = _problems(BASE + f"qat: {qat}\n" + launch, for_launch=bool(gpu))
    assert any(says in p for p in problems), problems
    assert _parse(BASE + "qat: {weight_dtype: fp8, activation_dtype: float8}\n").training.qat \
        .weight_dtype == "float8_e4m3fn"


def test_qat_embedding_and_delayed_fake_quantization(tiny_model_dir):
    pytest.importorskip("torchao")
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import choose_precision, load_model, load_tokenizer
    from trainer.models.qat import fake_quantized_layers, qat_callbacks

    qat = {"weight_dtype": "int4", "quantize_embedding": True, "fake_quant_after_n_steps": 2}
    cfg = make_cfg(tiny_model_dir, [{"path": "x.jsonl", "type": "alpaca"}], qat=qat)
    model, _ = load_model(cfg, load_tokenizer(cfg), choose_precision(cfg))
    assert fake_quantized_layers(model) == 2 * 7 + 1 + 1  # + the input embedding
    (delay,) = qat_callbacks(cfg.qat, model)
    quantizer = model.model.layers[0].mlp.up_proj.weight_fake_quantizer
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to=[])
    for step, enabled in ((0, False), (1, False), (2, True)):
        delay.on_step_begin(args, TrainerState(global_step=step), TrainerControl())
        assert quantizer.enabled is enabled
