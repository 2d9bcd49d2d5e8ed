"""Axolotl's speed keys -> kernel switches, `gradient_checkpointing: auto`'s memory plan, and
`ft train` outside a launcher on a multi-GPU machine. CPU only: Liger and cut-cross-entropy
need triton and a GPU, so here the plan is tested; tests/test_kernels_gpu.py runs them."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import replace

import pytest

from orchestrator.spec.load import parse_spec
from tests import fixtures_tiny
from trainer.distributed.gpu_choice import one_gpu_env
from trainer.kernels.plan import plan_kernels
from trainer.models.activation_memory import (
    GIB,
    Estimate,
    Shape,
    full_checkpointing,
    layers_to_checkpoint,
    replication_pays,
    static_bytes,
)
from trainer.torch_free.errors import SpecError, UserError
from trainer.torch_free.training import CCE_PLUGIN, LIGER_KEYS, LIGER_PLUGIN

BASE = """\
base_model: ./model
datasets:
  - path: data.jsonl
    type: alpaca
"""
LLAMA_8B = Shape(layers=32, hidden=4096, intermediate=14336, vocab=128256)
H100 = int(79.1 * GIB)
LORA_8B_STATIC = int(15.7 * GIB)  # bf16 weights + fp32 LoRA params, grads and Adam state

tiny_model_dir = fixtures_tiny.tiny_model_dir


def _training(extra: str):
    return parse_spec(textwrap.dedent(BASE + extra), "spec.yaml").training


def _problems(extra: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + extra, "spec.yaml")
    return [p.format("spec.yaml") for p in info.value.problems]


def _plan(extra: str = "", on_gpu=True, liger=True, cce=True):
    return plan_kernels(_training(extra), on_gpu=on_gpu, liger_installed=liger,
                        cce_installed=cce)


# -- spec keys

def test_axolotl_liger_and_cce_configs_validate():
    cfg = _training(f"""\
plugins:
  - {LIGER_PLUGIN}
liger_rope: true
liger_rms_norm: true
liger_glu_activation: true
liger_layer_norm: true
liger_fused_linear_cross_entropy: true
""")
    assert all(getattr(cfg, k) for k in LIGER_KEYS if k != "liger_cross_entropy")
    assert _training(f"plugins: [{CCE_PLUGIN}]\ncut_cross_entropy: true\n").cut_cross_entropy


def test_an_unknown_plugin_is_named():
    problems = _problems("plugins: [axolotl.integrations.spectrum.SpectrumPlugin]\n")
    assert len(problems) == 1 and "SpectrumPlugin" in problems[0]
    assert "spec.yaml:5: `plugins[0]`" in problems[0]
    assert "Spectrum layer selection (" in problems[0]  # the feature it brings
    (other,) = _problems("plugins: [my_company.plugins.FastPlugin]\n")
    assert "spec.yaml:5: `plugins`: ft does not have my_company.plugins.FastPlugin" in other


def test_two_loss_kernels_or_liger_off_with_a_kernel_on_are_refused():
    assert _problems("liger_fused_linear_cross_entropy: true\ncut_cross_entropy: true\n") == [
        "spec.yaml:6: `cut_cross_entropy`: choose one loss kernel: "
        "`liger_fused_linear_cross_entropy` is set too"]
    assert "liger_kernel: false" in _problems("liger_kernel: false\nliger_rope: true\n")[0]


# -- which kernels run

def test_on_a_gpu_with_liger_installed_ft_fuses_everything_by_default():
    plan = _plan()
    assert plan.chosen_by_ft and plan.fused_loss and not plan.cut_cross_entropy
    assert plan.liger_kwargs() == {"rope": True, "rms_norm": True, "swiglu": True,
                                   "geglu": True, "layer_norm": True,
                                   "fused_linear_cross_entropy": True, "cross_entropy": False}


def test_a_key_set_false_keeps_that_kernel_off():
    plan = _plan("liger_fused_linear_cross_entropy: false\nliger_rope: false\n")
    assert not plan.fused_loss and not plan.liger["liger_rope"]
    assert plan.liger["liger_rms_norm"]  # the keys left out keep ft's default


def test_another_loss_kernel_replaces_the_fused_linear_one():
    plan = _plan("liger_cross_entropy: true\n")
    assert plan.liger["liger_cross_entropy"] and not plan.fused_loss
    plan = _plan("cut_cross_entropy: true\n")
    assert plan.cut_cross_entropy and plan.fused_loss
    assert not plan.liger["liger_fused_linear_cross_entropy"] and plan.liger["liger_rms_norm"]


def test_liger_off_or_missing_means_plain_ops():
    assert _plan("liger_kernel: false\n").describe() == "none"
    assert _plan(liger=False).describe() == "none"  # nothing asked: nothing to complain about


def test_asked_for_but_not_installed_is_an_error():
    with pytest.raises(UserError, match="pip install liger-kernel"):
        _plan("liger_rms_norm: true\n", liger=False)
    with pytest.raises(UserError, match="pip install cut-cross-entropy"):
        _plan("cut_cross_entropy: true\n", cce=False)


def test_on_a_cpu_asked_for_kernels_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ft.kernels"):
        assert _plan("liger_kernel: true\n", on_gpu=False).describe() == "none"
    assert "need a GPU" in caplog.text


# -- gradient_checkpointing: auto

def test_checkpointing_defaults_to_auto_and_true_still_means_every_layer():
    assert _training("").gradient_checkpointing == "auto"
    assert not full_checkpointing(_training(""))
    assert full_checkpointing(_training("gradient_checkpointing: true\n"))
    assert full_checkpointing(_training("fsdp: [full_shard]\nfsdp_config:\n"
                                        "  activation_checkpointing: true\n"))


def test_8b_lora_full_rows_fit_an_80gb_card_without_recompute_once_logits_are_fused():
    fused = Estimate(LORA_8B_STATIC, tokens=4 * 2048, quantized=False, fused_loss=True)
    plain = Estimate(LORA_8B_STATIC, tokens=4 * 2048, quantized=False, fused_loss=False,
                     fused_norm=False)
    assert layers_to_checkpoint(LLAMA_8B, fused, H100) == 0
    assert layers_to_checkpoint(LLAMA_8B, plain, H100) > 0  # OOM there (ANCHORS.md)


def test_twice_the_tokens_checkpoint_only_some_layers_and_more_on_a_smaller_card():
    est = Estimate(LORA_8B_STATIC, tokens=8 * 2048, quantized=False, fused_loss=True)
    on_h100 = layers_to_checkpoint(LLAMA_8B, est, H100)
    assert 0 < on_h100 < LLAMA_8B.layers
    assert layers_to_checkpoint(LLAMA_8B, est, int(141 * GIB)) == 0
    assert layers_to_checkpoint(LLAMA_8B, est, int(40 * GIB)) > on_h100
    assert layers_to_checkpoint(LLAMA_8B, est, int(16 * GIB)) == LLAMA_8B.layers


def test_quantized_layers_are_estimated_larger():
    args = dict(static_bytes=6 * GIB, tokens=8 * 2048, fused_loss=True)
    assert layers_to_checkpoint(LLAMA_8B, Estimate(quantized=True, **args), H100) > \
        layers_to_checkpoint(LLAMA_8B, Estimate(quantized=False, **args), H100)


# -- fsdp_config.replicate_frozen_params: auto

LLAMA_70B = Shape(layers=80, hidden=8192, intermediate=28672, vocab=128256)


def test_8b_lora_on_two_gpus_replicates_its_frozen_base_when_no_layer_more_is_recomputed():
    # bf16 base 15.0 GiB + fp32 LoRA with grads and Adam (0.67 GB): over 2 GPUs 7.8 GiB
    # sharded, 15.3 GiB with the base whole on each.
    sharded = Estimate(int(7.8 * GIB), tokens=4 * 2048, quantized=False, fused_loss=True,
                       lean_lora=True)
    whole = replace(sharded, static_bytes=int(15.3 * GIB))
    assert replication_pays(LLAMA_8B, sharded, whole, H100)
    # Packed mbs 8: replicating would recompute 9 layers instead of 6: keep sharding.
    sharded, whole = (replace(e, tokens=8 * 2048) for e in (sharded, whole))
    assert not replication_pays(LLAMA_8B, sharded, whole, H100)


def test_70b_qlora_keeps_its_frozen_base_sharded():
    # 4-bit base with bf16 embeddings ~34.4 GiB whole; 4.7 GiB per GPU over 8.
    sharded = Estimate(int(4.7 * GIB), tokens=2048, quantized=True, fused_loss=True)
    whole = replace(sharded, static_bytes=int(34.4 * GIB))
    assert not replication_pays(LLAMA_70B, sharded, whole, H100)
    # ... and on a card where even the sharded estimate recomputes every layer, a base that
    # does not fit at all is never replicated.
    assert not replication_pays(LLAMA_70B, sharded, whole, int(32 * GIB))


def test_static_bytes_count_the_frozen_base_whole_when_it_is_replicated():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(100, 100, bias=False),
                                torch.nn.Linear(100, 10, bias=False))
    model[0].weight.requires_grad_(False)  # 10,000 frozen fp32 params: 40,000 bytes
    trained = 1_000 * (4 + 12)  # fp32 weight + grad + Adam m and v
    assert static_bytes(model, 1) == 40_000 + trained
    assert static_bytes(model, 2) == (40_000 + trained) // 2
    assert static_bytes(model, 2, replicated_frozen=True) == 40_000 + trained // 2


# -- ft train outside a launcher

def test_several_gpus_without_a_launcher_train_on_the_first_with_a_note():
    env, note = one_gpu_env({}, visible=2)
    assert env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert "--backend local --gpus-per-node 2" in note
    env, _ = one_gpu_env({"CUDA_VISIBLE_DEVICES": "3, 5"}, visible=2)
    assert env == {"CUDA_VISIBLE_DEVICES": "3"}


@pytest.mark.parametrize("environ, visible", [({}, 1), ({}, 0), ({"LOCAL_RANK": "0"}, 2),
                                              ({"WORLD_SIZE": "2"}, 8)])
def test_one_gpu_or_a_launcher_is_left_alone(environ, visible):
    assert one_gpu_env(environ, visible) == ({}, None)


# -- lean LoRA forward

def test_lean_lora_forward_is_peft_lora_and_its_gradients(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from trainer.kernels.lora_fused import fuse_lora

    torch.manual_seed(0)
    base = torch.nn.Sequential()
    base.add_module("up_proj", torch.nn.Linear(16, 24, bias=False))
    plain = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["up_proj"]))
    torch.nn.init.normal_(plain.base_model.model.up_proj.lora_B["default"].weight)
    x = torch.randn(3, 5, 16, requires_grad=True)
    expected = plain(x)
    expected.square().sum().backward()
    grads = [x.grad.clone(), plain.base_model.model.up_proj.lora_B["default"].weight.grad.clone()]
    x.grad = None
    plain.zero_grad()
    assert fuse_lora(plain, ("lora_mlp_kernel",)) == 1
    got = plain(x)
    got.square().sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(x.grad, grads[0])
    torch.testing.assert_close(plain.base_model.model.up_proj.lora_B["default"].weight.grad,
                               grads[1])
    with plain.disable_adapter():  # falls back to peft's forward
        torch.testing.assert_close(plain(x), base.up_proj.base_layer(x))


def test_lora_kernel_keys_default_on_for_plain_lora_on_a_gpu():
    from trainer.kernels.plan import lora_kernel_groups

    assert lora_kernel_groups(_training("adapter: lora\nlora_target_linear: true\n"),
                              on_gpu=True) == ("lora_qkv_kernel", "lora_o_kernel",
                                               "lora_mlp_kernel")
    assert lora_kernel_groups(_training("adapter: lora\nlora_target_linear: true\n"),
                              on_gpu=False) == ()
    assert lora_kernel_groups(_training("adapter: lora\nlora_target_linear: true\n"
                                        "lora_dropout: 0.05\n"), on_gpu=True) == ()
    assert lora_kernel_groups(_training("adapter: lora\nlora_target_linear: true\n"
                                        "lora_o_kernel: false\n"), on_gpu=True) == (
        "lora_qkv_kernel", "lora_mlp_kernel")


def test_the_lean_lora_forward_leaves_room_for_more_kept_layers():
    args = dict(static_bytes=LORA_8B_STATIC, tokens=8 * 2048, quantized=False, fused_loss=True)
    assert layers_to_checkpoint(LLAMA_8B, Estimate(lean_lora=True, **args), H100) < \
        layers_to_checkpoint(LLAMA_8B, Estimate(**args), H100)


def test_lean_lora_mlp_is_the_same_function_and_keeps_no_product(tiny_model_dir):
    """The SwiGLU MLP with LoRA on its three projections: same loss and adapter gradients,
    and backward keeps gate and up only, not silu(gate) * up as well
    (trainer/kernels/lora_mlp.py)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.kernels.lora_fused import fuse_lora
    from trainer.kernels.lora_mlp import lean_mlp
    from trainer.models.load import lora_config

    cfg = _training("adapter: lora\nlora_target_linear: true\nlora_r: 4\n")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           lora_config(cfg))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    width = model.config.intermediate_size
    ids = torch.randint(3, model.config.vocab_size, (2, 9))

    def run():
        kept = []

        def pack(t):
            kept.append(t.numel() == ids.numel() * width)  # [tokens x intermediate]
            return t

        model.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads, sum(kept)

    fuse_lora(model, ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel"))
    loss, grads, kept = run()
    assert lean_mlp(model, liger_swiglu=False) == model.config.num_hidden_layers
    lean_loss, lean_grads, lean_kept = run()
    torch.testing.assert_close(lean_loss, loss)
    assert lean_grads.keys() == grads.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(lean_grads[name], grad, msg=name)
    layers = model.config.num_hidden_layers
    # gate and up per layer, where the plain MLP also kept silu(gate) and the product
    assert lean_kept == 2 * layers < kept
