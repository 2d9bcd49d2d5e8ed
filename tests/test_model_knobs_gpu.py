"""Activation offloading on a GPU, where it moves memory: the forward's peak falls, the
saved activations reach CPU memory and come back exact (trainer/loop/activation_offload.py).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a GPU")]


def _forward_backward(model, ids, offload):
    from trainer.loop.activation_offload import forward_context

    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = torch.cuda.memory_allocated()
    with forward_context(offload):
        loss = model(input_ids=ids, labels=ids).loss
    torch.cuda.synchronize()
    forward_peak = torch.cuda.max_memory_allocated() - start
    loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters()}
    return loss.item(), forward_peak, grads


def test_offloading_moves_saved_activations_off_the_gpu_with_the_same_gradients():
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.loop.activation_offload import ActivationOffload

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=2048, hidden_size=1024, intermediate_size=2816,
                         num_hidden_layers=4, num_attention_heads=16, num_key_value_heads=4,
                         attn_implementation="sdpa")
    model = LlamaForCausalLM(config).cuda()
    ids = torch.randint(0, 2048, (4, 1024), device="cuda")
    offload = ActivationOffload(model, "all_saved")
    loss_off, peak_off, grads_off = _forward_backward(model, ids, None)
    loss_on, peak_on, grads_on = _forward_backward(model, ids, offload)
    print(f"forward peak: {peak_off / 2**20:.0f} MiB kept, {peak_on / 2**20:.0f} MiB "
          f"offloaded; {offload.facts()}")
    assert offload.counts.offloaded > 0 and offload.counts.offloaded_bytes > 2**28
    assert peak_on < 0.5 * peak_off
    assert loss_on == pytest.approx(loss_off, rel=1e-6)
    for name, grad in grads_off.items():
        torch.testing.assert_close(grads_on[name], grad, rtol=1e-4, atol=1e-6)
