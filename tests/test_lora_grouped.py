"""Grouped LoRA projections (trainer/kernels/lora_grouped.py): q/k/v and gate/up computed as
one autograd function give the loss and the adapter gradients of peft's per-projection
forward, and a model that calls the projections another way falls back to them."""

from __future__ import annotations

import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

from trainer.kernels.lora_fused import fuse_lora
from trainer.kernels.lora_grouped import GROUP_MEMBERS, _dense, _GroupedLora, group_lora
from trainer.kernels.lora_mlp import lean_mlp
from trainer.models.load import lora_config
from trainer.torch_free.training import TrainingConfig

ALL = ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel")


def _model(tiny_model_dir, dtype=torch.float32):
    cfg = TrainingConfig.model_validate({"base_model": "x", "adapter": "lora", "lora_r": 4,
                                         "lora_target_linear": True,
                                         "datasets": [{"path": "d.jsonl"}]})
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype),
                           lora_config(cfg))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def _step(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _count_calls(monkeypatch) -> list[int]:
    calls = [0]
    apply = _GroupedLora.apply

    def counted(*args):
        calls[0] += 1
        return apply(*args)
    monkeypatch.setattr(_GroupedLora, "apply", counted)
    return calls


def test_grouped_projections_give_peft_loss_and_adapter_gradients(tiny_model_dir, monkeypatch):
    model = _model(tiny_model_dir)
    ids = torch.randint(3, model.config.vocab_size, (2, 9))
    loss, grads = _step(model, ids)  # peft's own forward
    fuse_lora(model, ALL)
    lean_mlp(model, liger_swiglu=False)
    layers = model.config.num_hidden_layers
    assert group_lora(model, ("lora_qkv_kernel", "lora_mlp_kernel")) == 2 * layers
    calls = _count_calls(monkeypatch)
    got_loss, got_grads = _step(model, ids)
    assert calls[0] == 2 * layers  # every group ran as one function, once per layer
    torch.testing.assert_close(got_loss, loss)
    assert got_grads.keys() == grads.keys()
    assert any("q_proj.lora_A" in n for n in grads) and any("up_proj.lora_B" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(got_grads[name], grad, msg=name)


def test_grouped_bf16_stays_within_bf16_rounding_of_peft(tiny_model_dir):
    model = _model(tiny_model_dir, torch.bfloat16)
    ids = torch.randint(3, model.config.vocab_size, (2, 16))
    loss, grads = _step(model, ids)
    fuse_lora(model, ALL)
    group_lora(model, ("lora_qkv_kernel", "lora_mlp_kernel"))
    got_loss, got_grads = _step(model, ids)
    torch.testing.assert_close(got_loss, loss, rtol=1e-2, atol=1e-2)
    for name, grad in grads.items():  # relative to each gradient's own size
        scale = grad.float().abs().max().item() or 1.0
        err = (got_grads[name].float() - grad.float()).abs().max().item() / scale
        assert err < 0.05, (name, err)


def test_a_group_called_another_way_falls_back_to_each_projection(tiny_model_dir, caplog):
    """An attention that calls q_proj alone (another input for k and v) gives up grouping:
    the outputs are still each projection's own."""
    model = _model(tiny_model_dir)
    attn = model.base_model.model.model.layers[0].self_attn
    x = torch.randn(1, 5, model.config.hidden_size)
    y = torch.randn(1, 5, model.config.hidden_size)
    expected = [attn.q_proj(x), attn.k_proj(y), attn.v_proj(y)]
    fuse_lora(model, ALL)
    group_lora(model, ("lora_qkv_kernel",))
    with caplog.at_level("INFO", logger="ft.lora"):
        got = [attn.q_proj(x), attn.k_proj(y), attn.v_proj(y), attn.k_proj(x)]
    for g, e in zip(got, expected, strict=False):
        torch.testing.assert_close(g, e)
    torch.testing.assert_close(got[3], attn.k_proj._ft_group_forward(x))
    assert "per-projection forwards from here" in caplog.text


def test_groups_cover_what_the_lean_kernel_keys_name():
    from trainer.kernels.lora_fused import GROUPS

    for key, members in GROUP_MEMBERS.items():
        assert set(members) <= set(GROUPS[key])


def test_grouped_qlora_dequantizes_the_same_4bit_weights(tiny_model_dir):
    """A bitsandbytes 4-bit base: the group dequantizes each frozen weight and multiplies,
    as bitsandbytes' own matmul does on a GPU for more than one token, so loss and adapter
    gradients match peft's QLoRA forward (on a CPU bitsandbytes multiplies with its own
    kernel, hence not exact there: the group's outputs are checked exactly against the LoRA
    formula on the dequantized weights, the whole model's gradients within 2%)."""
    from transformers import BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=torch.float32)
    cfg = TrainingConfig.model_validate({"base_model": "x", "adapter": "qlora", "lora_r": 4,
                                         "load_in_4bit": True, "lora_target_linear": True,
                                         "datasets": [{"path": "d.jsonl"}]})
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, quantization_config=quant, dtype=torch.float32), lora_config(cfg))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.randint(3, model.config.vocab_size, (2, 9))
    loss, grads = _step(model, ids)
    fuse_lora(model, ALL)
    assert group_lora(model, ("lora_qkv_kernel", "lora_mlp_kernel")) == \
        2 * model.config.num_hidden_layers
    got_loss, got_grads = _step(model, ids)
    torch.testing.assert_close(got_loss, loss, rtol=1e-4, atol=1e-4)
    for name, grad in grads.items():
        scale = grad.abs().max().item() or 1.0
        err = (got_grads[name] - grad).abs().max().item() / scale
        assert err < 0.02, (name, err)
    mlp = model.base_model.model.model.layers[1].mlp
    x = torch.randn(1, 5, model.config.hidden_size)
    gate, up = mlp.gate_proj(x), mlp.up_proj(x)
    for proj, got in ((mlp.gate_proj, gate), (mlp.up_proj, up)):
        a, b = proj.lora_A["default"].weight, proj.lora_B["default"].weight
        want = x @ _dense(proj, torch.float32).t() + (x @ a.t()) @ (b * proj.scaling["default"]).t()
        torch.testing.assert_close(got, want)


def test_grouped_projections_under_gradient_checkpointing(tiny_model_dir):
    """Recomputed layers call the group again in backward: same gradients as without."""
    model = _model(tiny_model_dir)
    ids = torch.randint(3, model.config.vocab_size, (2, 9))
    fuse_lora(model, ALL)
    group_lora(model, ("lora_qkv_kernel", "lora_mlp_kernel"))
    loss, grads = _step(model, ids)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    got_loss, got_grads = _step(model, ids)
    torch.testing.assert_close(got_loss, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(got_grads[name], grad, msg=name)
