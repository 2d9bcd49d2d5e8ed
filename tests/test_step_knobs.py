"""The step knobs Axolotl configs carry, honoured for real: `activation_offloading` (and
`gradient_checkpointing: offload | unsloth`), `torch_compile`, the torchao optimizers and
`qat`. Each corpus config (tests/fixtures/axolotl/corpus/) trains 3 steps on the tiny
model; the refused values say why at validate time.
"""

from __future__ import annotations

import os

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.knob_runs import BASE, CORPUS, corpus_run, notes, parse, problems
from tests.train_helpers import summary, train_losses
from trainer.torch_free.errors import UserError

# --- activation offloading -------------------------------------------------------------------

def test_activation_offloading_lora_corpus_config_trains_through_the_hooks(tmp_path,
                                                                         tiny_model_dir):
    """The hooks saw every activation the forward saved (on a CPU run they stay where they
    are: tests/test_model_knobs_gpu.py measures the copies on a GPU)."""
    # adamw_torch: torchao's 8-bit AdamW compiles its update, a minute on a loaded CPU (the
    # QAT test trains with torchao's 4-bit one).
    out = corpus_run("activation-offloading.yml", tmp_path, tiny_model_dir,
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

    lora = parse(BASE + "adapter: lora\nlora_target_linear: true\n"
                  + yaml.safe_dump(spelling)).training
    assert offload_mode(lora) == mode
    assert full_checkpointing(lora) == (mode == "layer_inputs")  # offload replaces recompute
    full = parse(BASE + yaml.safe_dump(spelling)).training
    assert offload_mode(full) == "layer_inputs" and full_checkpointing(full)


def test_full_finetune_unsloth_spelling_offloads_recomputed_layer_inputs(tmp_path,
                                                                        tiny_model_dir):
    """`gradient_checkpointing: unsloth` (once plain recompute) recomputes every layer and
    offloads its input: 2 layers x 3 steps of layer inputs and the tensors saved outside the
    layers reach the hooks, far fewer than without recompute."""
    out = corpus_run("reinit-weights.yml", tmp_path, tiny_model_dir, drop=("reinit_weights",),
                      optimizer="adamw_torch", gradient_checkpointing="unsloth")
    facts = summary(out)["model"]["activation_offloading"]
    assert facts["mode"] == "layer_inputs" and 6 <= facts["saved_tensors"] < 100


def test_disk_offloading_is_refused_and_an_overridden_reentrant_flag_is_said():
    assert "`activation_offloading: true` keeps them in CPU memory" in problems(
        BASE + "activation_offloading: disk\n")[0]
    said = notes(BASE + "activation_offloading: true\ngradient_checkpointing_kwargs:\n"
                 "  use_reentrant: false\n")
    assert any("use_reentrant: false` is ignored" in n for n in said)
    assert "layer offloading" in problems(BASE + "layer_offloading: true\n")[0]


# --- torch_compile ---------------------------------------------------------------------------

def test_torch_compile_corpus_config_trains_compiled(tmp_path, tiny_model_dir):
    """Backend `eager`: torch.compile's graph capture (dynamo) without code generation;
    inductor's C++ build, and even aot_eager's autograd tracing, take minutes on a loaded
    CPU (aot_eager: 132 s here). Rows padded to one length: one graph, no recompiles. The
    corpus config's inductor is what a GPU job uses."""
    out = corpus_run("torch-compile.yml", tmp_path, tiny_model_dir, data="chat.jsonl",
                      drop=("chat_template",), torch_compile_backend="eager",
                      optimizer="adamw_torch", sequence_len=128, pad_to_sequence_len=True,
                      env={**os.environ, "TORCH_LOGS": "dynamo"})
    assert summary(out)["global_step"] == 3
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "torchdynamo start tracing forward" in stderr  # the model ran compiled
    from trainer.loop.compile import compile_args

    cfg = parse((CORPUS / "torch-compile.yml").read_text()).training
    assert compile_args(cfg) == {"torch_compile": True, "torch_compile_backend": "inductor",
                                 "torch_compile_mode": "default"}
    assert compile_args(parse(BASE + "torch_compile: auto\n").training) == {
        "torch_compile": True}
    assert any("`torch_compile_mode` is ignored" in n
               for n in notes(BASE + "torch_compile_mode: max-autotune\n"))


# --- optimizers --------------------------------------------------------------------------------

def test_every_transformers_optimizer_name_trains_or_is_refused_with_a_reason():
    from transformers.training_args import OptimizerNames

    from trainer.torch_free.optimizers import REFUSED, TRAINS

    names = {o.value for o in OptimizerNames}
    assert names <= TRAINS | set(REFUSED) and not TRAINS & set(REFUSED)
    for name in sorted(names - TRAINS):
        (problem,) = problems(BASE + f"optimizer: {name}\n")
        assert problem == REFUSED[name]
    from trainer.torch_free.optimizers import transformers_name

    assert transformers_name(parse(BASE + "optimizer: ao_adamw_4bit\n").training.optimizer) \
        == "adamw_torch_4bit"
    assert "unknown optimizer 'adamw_torh'" in problems(BASE + "optimizer: adamw_torh\n")[0]


def test_a_torchao_optimizer_without_torchao_is_one_clear_line(monkeypatch):
    import importlib.util

    from trainer.loop.spec_packages import require_spec_packages

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchao" else real(name, *a))
    cfg = parse(BASE + "optimizer: adamw_torch_4bit\n").training
    with pytest.raises(UserError, match=r"`optimizer: adamw_torch_4bit` need torchao"):
        require_spec_packages(cfg)


# --- QAT ---------------------------------------------------------------------------------------

def test_qat_corpus_config_trains_fake_quantized_with_the_4bit_optimizer(tmp_path,
                                                                         tiny_model_dir):
    """int8 activations x int4 weights fake-quantized while training, torchao's 4-bit
    AdamW, and a plain model saved. The one test that trains with a torchao optimizer: it
    compiles its update with inductor (16 s warm here, up to a minute with a cold compile
    cache on a loaded 2-core machine)."""
    pytest.importorskip("torchao")
    from transformers import AutoModelForCausalLM

    out = corpus_run("qat.yml", tmp_path, tiny_model_dir, drop=("special_tokens",),
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
    found = problems(BASE + f"qat: {qat}\n" + launch, for_launch=bool(gpu))
    assert any(says in p for p in found), found
    assert parse(BASE + "qat: {weight_dtype: fp8, activation_dtype: float8}\n").training.qat \
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
