"""LoRA projections that read the same input, computed as one group: q/k/v, and gate/up.

With peft (and with the lean forward of trainer/kernels/lora_fused.py alone) each of q_proj,
k_proj and v_proj runs its frozen matmul and its own adapter A matmul on the same input x.
Backward then produces six separate gradients for x, which autograd sums with five
elementwise passes over a [tokens x hidden] tensor, and three skinny A matmuls re-read x.
Measured on one H100 at the Llama-3.1-8B shape, those passes were about 6% of a LoRA step.

Here the first projection of a group to be called with x computes the whole group in one
autograd function: the frozen outputs, one A matmul for all the adapters (A stacked), the B
products added in the GEMM epilogue. Backward forms x's gradient with one GEMM per
projection accumulating into the same buffer (cuBLAS's beta = 1: no separate sum), one GEMM
for A's gradients and one for the adapters' share of x's gradient. The other projections
of the group, called next with the same x, take their output from the group. The function
is the one peft computes; only the order of the bf16 sums differs.

A group is used only while its projections are called the way Llama-style attention and
MLPs call them (each once, with the same input, before the input changes): the first time
that does not hold, the group goes back to per-projection forwards for good, with a log
line. Only plain LoRA on an unsharded frozen base (a bf16 Linear or a bitsandbytes 4-bit
one) is grouped; anything else keeps the per-projection forward.
"""

from __future__ import annotations

import logging
from types import MethodType

import torch
from torch import nn

from trainer.kernels.lora_fused import _plain_adapter

log = logging.getLogger("ft.lora")

GROUP_MEMBERS = {"lora_qkv_kernel": ("q_proj", "k_proj", "v_proj"),
                 "lora_mlp_kernel": ("gate_proj", "up_proj")}


def group_lora(model, groups: tuple[str, ...]) -> int:
    """Group the eligible projections of every module; returns how many groups."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in model.modules():
        for key in groups:
            names = GROUP_MEMBERS.get(key, ())
            members = [getattr(module, n, None) for n in names]
            if names and all(isinstance(m, LoraLayer) and _frozen_weight(m) is not None
                             for m in members):
                _Group(names, members)
                count += 1
    if count:
        log.info("grouped LoRA projections (one autograd function per q/k/v and gate/up "
                 "group) in %d places", count)
    return count


def _frozen_weight(layer) -> torch.Tensor | None:
    """The frozen base weight of a plain Linear or a bitsandbytes 4-bit one, else None."""
    base = layer.base_layer
    weight = getattr(base, "weight", None)
    if weight is None or weight.requires_grad or type(weight).__name__ == "DTensor":
        return None
    if type(base) is nn.Linear:
        return weight
    if type(weight).__name__ == "Params4bit":
        return weight
    return None


def _dense(layer, dtype: torch.dtype) -> torch.Tensor:
    weight = layer.base_layer.weight
    if type(weight).__name__ == "Params4bit":
        import bitsandbytes.functional as bnbf

        data, state = weight.data, weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):  # bitsandbytes' CPU layout
            data, state = bnbf._convert_weight_packed_for_cpu_inverse(data, state)
        return bnbf.dequantize_4bit(data, state).to(dtype)
    return weight


class _Group:
    """The projections of one module that share their input, and the output not yet taken."""

    def __init__(self, names: tuple[str, ...], members: list) -> None:
        self.names, self.members = names, members
        self.pending: dict[str, torch.Tensor] = {}
        self.input: torch.Tensor | None = None
        self.version = -1
        self.active = True
        for name, member in zip(names, members, strict=True):
            member._ft_group_forward = member.forward  # the lean or peft forward
            member.forward = MethodType(_member_forward(self, name), member)

    def output(self, name: str, member, x: torch.Tensor, args, kwargs) -> torch.Tensor:
        if not self.active or args or kwargs:
            return member._ft_group_forward(x, *args, **kwargs)
        if self.input is x and self.version == x._version and name in self.pending:
            out = self.pending.pop(name)
            if not self.pending:
                self.input = None
            return out
        if self.pending:  # a projection was left uncalled: not the call pattern we group
            return self._give_up(name, member, x, "a projection of the group was not called")
        adapters = [_plain_adapter(m, {}) for m in self.members]
        if None in adapters:
            return member._ft_group_forward(x)
        outs = _grouped(x, self.members, adapters)
        self.pending = dict(zip(self.names, outs, strict=True))
        self.input, self.version = x, x._version
        return self.pending.pop(name)

    def _give_up(self, name, member, x, why: str) -> torch.Tensor:
        self.active = False
        self.pending.clear()
        self.input = None
        log.info("LoRA group %s: %s; per-projection forwards from here", "/".join(self.names),
                 why)
        return member._ft_group_forward(x)


def _member_forward(group: _Group, name: str):
    def forward(self, x, *args, **kwargs):
        return group.output(name, self, x, args, kwargs)
    return forward


def _grouped(x: torch.Tensor, members: list, adapters: list[str]) -> list[torch.Tensor]:
    a = [m.lora_A[n].weight for m, n in zip(members, adapters, strict=True)]
    b = [m.lora_B[n].weight for m, n in zip(members, adapters, strict=True)]
    scale = tuple(float(m.scaling[n]) for m, n in zip(members, adapters, strict=True))
    bias = tuple(getattr(m.base_layer, "bias", None) for m in members)
    return list(_GroupedLora.apply(x, tuple(members), scale, bias, *a, *b))


class _GroupedLora(torch.autograd.Function):
    """x -> [base_i(x) + (x A_i^T)(s_i B_i)^T for each projection i]; A_i, B_i train."""

    @staticmethod
    def forward(ctx, x, members, scale, bias, *ab):
        n = len(members)
        a_params, b_params = ab[:n], ab[n:]
        dtype = x.dtype
        flat = x.reshape(-1, x.shape[-1])
        ranks = [p.shape[0] for p in a_params]
        a_cat = torch.cat([p.to(dtype) for p in a_params])
        down = flat @ a_cat.t()  # [tokens x sum of ranks]: x read once for every adapter
        outs = []
        downs = down.split(ranks, dim=1)  # each adapter's columns, views
        for i, member in enumerate(members):
            weight = _dense(member, dtype)
            base = nn.functional.linear(flat, weight, bias[i])
            up = (b_params[i] * scale[i]).to(dtype)
            out = torch.addmm(base, downs[i], up.t())
            outs.append(out.view(*x.shape[:-1], out.shape[-1]))
        ctx.save_for_backward(flat, down, a_cat, *b_params)
        ctx.members, ctx.scale, ctx.ranks, ctx.x_shape = members, scale, ranks, x.shape
        ctx.a_dtypes = [p.dtype for p in a_params]
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        flat, down, a_cat, *b_params = ctx.saved_tensors
        dtype, n = flat.dtype, len(ctx.members)
        g_flat = [torch.zeros(flat.shape[0], b.shape[0], dtype=dtype, device=flat.device)
                  if g is None else g.reshape(-1, g.shape[-1]) for g, b in zip(grads, b_params,
                                                                          strict=True)]
        grad_b, g_down = [], []
        for i, down_i in enumerate(down.split(ctx.ranks, dim=1)):
            grad_b.append((g_flat[i].t() @ down_i).to(b_params[i].dtype) * ctx.scale[i]
                          if ctx.needs_input_grad[4 + n + i] else None)
            g_down.append(g_flat[i] @ (b_params[i] * ctx.scale[i]).to(dtype))
        g_down_cat = torch.cat(g_down, dim=1)
        grad_a_cat = (g_down_cat.t() @ flat) if any(ctx.needs_input_grad[4:4 + n]) else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = g_down_cat @ a_cat  # the adapters' share, then each frozen matmul's
            for i, member in enumerate(ctx.members):
                grad_x.addmm_(g_flat[i], _dense(member, dtype))
            grad_x = grad_x.view(ctx.x_shape)
        grad_a = [None] * n
        if grad_a_cat is not None:
            parts = grad_a_cat.split(ctx.ranks)
            grad_a = [p.to(d) for p, d in zip(parts, ctx.a_dtypes, strict=True)]
        return (grad_x, None, None, None, *grad_a, *grad_b)
