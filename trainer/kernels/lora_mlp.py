"""A LoRA SwiGLU MLP that keeps gate and up for backward, not their product.

In `down_proj(silu(gate) * up)` with LoRA on down_proj, the frozen base matmul keeps nothing
of its input for backward (its weight takes no gradient), but the adapter's A matmul keeps
the whole [tokens x intermediate] product h to form A's gradient, beside the gate and up the
activation's backward keeps anyway: 8B, 8,192 tokens a step, that is 235 MB a layer, 7 GiB
over 32 layers (what ft held more than Axolotl, whose LoRA MLP kernel keeps gate and up only).

Here one autograd function computes h and h @ A^T and keeps gate, up and A; backward
recomputes h (one elementwise pass) for A's gradient. The same kernel computes h both times
(Liger's SwiGLU where the spec uses it, else the model's own `silu(gate) * up`), so the
numbers are those of the unpatched MLP. Applies to MLPs whose three projections have the
lean LoRA forward (trainer/kernels/lora_fused.py) and whose activation is SiLU; others are
untouched.
"""

from __future__ import annotations

import logging
from types import MethodType

import torch
from torch import nn

from trainer.kernels.lora_fused import _plain_adapter

log = logging.getLogger("ft.lora")

SILU = ("silu", "swish")


def lean_mlp(model, *, liger_swiglu: bool) -> int:
    """Give every eligible MLP the lean forward; returns how many."""
    from peft.tuners.lora import LoraLayer

    act = getattr(getattr(model, "config", None), "hidden_act", None)
    if act not in SILU:
        return 0
    count = 0
    for module in model.modules():
        projs = [getattr(module, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if all(isinstance(p, LoraLayer) and isinstance(getattr(p, "lora_A", None), nn.ModuleDict)
               for p in projs):
            module._ft_mlp_fallback = module.forward  # Liger's or the model's own
            module._ft_liger_swiglu = liger_swiglu
            module.forward = MethodType(_mlp_forward, module)
            count += 1
    log.info("lean LoRA MLP (gate and up kept, not their product) on %d layers", count)
    return count


def _mlp_forward(self, x: torch.Tensor) -> torch.Tensor:
    down = self.down_proj
    name = _plain_adapter(down, {})
    if name is None:
        return self._ft_mlp_fallback(x)
    gate = self.gate_proj(x)
    up = self.up_proj(x)
    dtype = gate.dtype
    h, h_a = _SwigluLoraA.apply(gate, up, down.lora_A[name].weight.to(dtype),
                                self._ft_liger_swiglu and gate.is_cuda)
    result = down.base_layer(h)  # frozen: keeps nothing of h
    b = (down.lora_B[name].weight * down.scaling[name]).to(dtype)
    out = torch.addmm(result.reshape(-1, result.shape[-1]), h_a.reshape(-1, h_a.shape[-1]),
                      b.t())
    return out.view(result.shape)


def _swiglu(gate: torch.Tensor, up: torch.Tensor, liger: bool) -> torch.Tensor:
    if liger:
        from liger_kernel.ops.swiglu import swiglu_forward

        return swiglu_forward(gate, up)[2]
    return nn.functional.silu(gate) * up


class _SwigluLoraA(torch.autograd.Function):
    """(gate, up, A) -> (h = silu(gate) * up, h @ A^T); keeps gate, up, A."""

    @staticmethod
    def forward(ctx, gate, up, a_weight, liger):
        gate, up = gate.contiguous(), up.contiguous()
        h = _swiglu(gate, up, liger)
        ctx.save_for_backward(gate, up, a_weight)
        ctx.liger = liger
        return h, nn.functional.linear(h, a_weight)

    @staticmethod
    def backward(ctx, grad_h, grad_h_a):
        gate, up, a_weight = ctx.saved_tensors
        width = gate.shape[-1]
        h = _swiglu(gate, up, ctx.liger)
        grad_a = None
        if ctx.needs_input_grad[2]:
            grad_a = grad_h_a.reshape(-1, grad_h_a.shape[-1]).t() @ h.reshape(-1, width)
        del h
        grad = grad_h_a @ a_weight
        if grad_h is not None:
            grad = grad + grad_h
        if ctx.liger:
            from liger_kernel.ops.swiglu import swiglu_backward

            # in place over gate and up, which nothing else keeps (Liger's own SwiGLU does so)
            grad_gate, grad_up = swiglu_backward(gate, up, grad.contiguous())
        else:
            with torch.enable_grad():
                g, u = gate.detach().requires_grad_(), up.detach().requires_grad_()
                grad_gate, grad_up = torch.autograd.grad(nn.functional.silu(g) * u, (g, u),
                                                         grad)
        return grad_gate, grad_up, grad_a, None
