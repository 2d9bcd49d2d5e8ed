"""GPU check of ft_varlen (trainer/kernels/attention_varlen.py), one JSON line: forward and
gradients against per-sample sdpa in fp32 (relative error), then the fwd+bwd time of the 8B
attention shape (4 rows x 2048, 32 query / 8 key-value heads, head_dim 128, samples ~350 tokens) for
varlen vs sdpa with the block-diagonal mask packed rows get without it.

    python3 bench/varlen_check.py [OUT.jsonl]
"""

from __future__ import annotations

import json
import random
import sys

import torch

from trainer.kernels import attention_varlen as av
from trainer.kernels.attention_varlen import segment_offsets


class _Attn:  # what transformers' attention functions read from the module
    is_causal = True
    num_key_value_groups = 4
    training = True


def _packed_positions(rows: int, seq: int, rng: random.Random) -> list[list[int]]:
    out = []
    for _ in range(rows):
        pos: list[int] = []
        while len(pos) < seq:
            n = min(seq - len(pos), max(16, int(rng.lognormvariate(5.86, 0.8))))
            pos += range(n)
        out.append(pos)
    return out


def _inputs(rows, seq, heads=32, kv=8, dim=128, seed=0):
    rng = random.Random(seed)
    pos = _packed_positions(rows, seq, rng)
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(rows, heads, seq, dim, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(rows, kv, seq, dim, device="cuda", generator=g, dtype=torch.bfloat16)
    v = torch.randn(rows, kv, seq, dim, device="cuda", generator=g, dtype=torch.bfloat16)
    starts = [s for r, p in enumerate(pos) for s in segment_offsets(p, start=r * seq)]
    cu = torch.tensor(starts + [rows * seq], dtype=torch.int32)
    longest = int((cu[1:] - cu[:-1]).max())
    kw = {"position_ids": torch.tensor(pos, device="cuda"), "cu_seq_lens_q": cu.cuda(),
          "cu_seq_lens_k": cu.cuda(), "max_length_q": longest, "max_length_k": longest}
    return q, k, v, kw, cu.tolist()


def _reference(q, k, v, cu, seq):
    """Per-sample causal sdpa in fp32, GQA by repeating k/v."""
    rep = q.shape[1] // k.shape[1]
    qf, kf, vf = (t.float() for t in (q, k, v))
    kf, vf = kf.repeat_interleave(rep, 1), vf.repeat_interleave(rep, 1)
    out = torch.empty(q.shape[0], q.shape[2], q.shape[1], q.shape[3], device=q.device)
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        r, s, e = a // seq, a % seq, a % seq + (b - a)
        o = torch.nn.functional.scaled_dot_product_attention(
            qf[r:r + 1, :, s:e], kf[r:r + 1, :, s:e], vf[r:r + 1, :, s:e], is_causal=True)
        out[r, s:e] = o[0].transpose(0, 1)
    return out


def _rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def check() -> dict:
    seq = 512
    q, k, v, kw, cu = _inputs(2, seq)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = av.varlen_attention_forward(_Attn(), *leaves, None, scaling=128 ** -0.5, **kw)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref_leaves = [t.clone().float().requires_grad_() for t in (q, k, v)]
    ref = _reference(*ref_leaves, cu, seq)
    ref.backward(grad.float())
    res = {"fwd_rel_err": _rel(out, ref)}
    for name, a, b in zip("qkv", leaves, ref_leaves, strict=True):
        res[f"grad_{name}_rel_err"] = _rel(a.grad, b.grad)
    # without the collator's offsets: derived from position ids
    out2, _ = av.varlen_attention_forward(_Attn(), q, k, v, None, scaling=128 ** -0.5,
                                          position_ids=kw["position_ids"])
    res["fwd_from_positions_rel_err"] = _rel(out2, ref)
    return res


def _time(fn, reps=10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def timing() -> dict:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seq = 2048
    q, k, v, kw, _ = _inputs(4, seq, seed=1)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    mask = av._block_diagonal_mask(kw["position_ids"], seq)
    grad = torch.randn(4, seq, 32, 128, device="cuda", dtype=torch.bfloat16)

    def varlen():
        out, _ = av.varlen_attention_forward(_Attn(), *leaves, None, scaling=128 ** -0.5, **kw)
        out.backward(grad)

    def masked():
        out, _ = sdpa_attention_forward(_Attn(), *leaves, mask, scaling=128 ** -0.5)
        out.backward(grad)

    return {"varlen_fwd_bwd_ms_per_layer": round(_time(varlen), 3),
            "sdpa_mask_fwd_bwd_ms_per_layer": round(_time(masked), 3)}


def main() -> None:
    import inspect

    res = {"tool": "varlen_check", "device": torch.cuda.get_device_name(0),
           "torch": torch.__version__,
           "varlen_signature": str(inspect.signature(av._varlen())), **check(), **timing()}
    line = json.dumps(res)
    print(line, flush=True)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
