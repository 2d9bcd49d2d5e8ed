"""Packed rows through PyTorch's variable-length flash attention (`ft_varlen`).

With sample packing and sdpa, transformers turns the position ids into a [batch, 1, seq, seq]
block-diagonal mask. sdpa's flash kernel takes no mask, so the memory-efficient kernel runs
instead, over every (query, key) pair of the row: the masked cross-sample blocks and the
upper triangle included, ~8x the attention work of 2048-token rows of ~350-token samples.
`torch.nn.attention.varlen.varlen_attn` (torch >= 2.10) runs the flash kernel on each sample
alone, from the samples' start offsets (`cu_seqlens`).

The collator already knows where every sample starts, so it sends the offsets with the batch
(`cu_seq_lens_q/k`, int32, and `max_length_q/k` as Python ints: the names transformers' own
flash path uses, which the models pass down to every attention call). Nothing is read back
from the GPU per layer or per step. A batch without them (generation, a caller's own batch)
derives the offsets from `position_ids` (one host sync per layer); a real padding mask, a
CPU tensor, fp32, dropout, a sliding window, a soft cap or head_dim > 256 take plain sdpa,
with a block-diagonal mask where the position ids show packed samples.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch

NAME = "ft_varlen"
_MAX_HEAD_DIM = 256  # the flash kernel behind varlen_attn


def available() -> bool:
    """A GPU and a torch whose varlen attention exists."""
    return torch.cuda.is_available() and _varlen() is not None


@lru_cache(maxsize=1)
def _varlen() -> Any:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@lru_cache(maxsize=1)
def _varlen_params() -> frozenset[str]:
    """varlen_attn's keywords differ across torch releases (is_causal vs window_size,
    enable_gqa and scale only in some)."""
    try:
        return frozenset(inspect.signature(_varlen()).parameters)
    except (TypeError, ValueError):
        return frozenset()


def register() -> None:
    """Make `attn_implementation: ft_varlen` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, _padding_mask_only)


def _padding_mask_only(*args: Any, **kwargs: Any) -> Any:
    """A real 2D padding mask becomes sdpa's usual mask; packed rows (no mask) get none,
    as with flash: the offsets keep the samples apart."""
    if kwargs.get("attention_mask") is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, **kwargs)


def segment_offsets(position_ids: list[int], start: int = 0) -> list[int]:
    """Where each segment of one row starts (a segment starts wherever the position does
    not follow the previous one by 1), offset by `start`; the row's end is not included."""
    return [start + i for i, p in enumerate(position_ids) if i == 0 or p != position_ids[i - 1] + 1]


def _offsets_from_positions(position_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """cu_seqlens and the longest segment of the flattened rows (reads back from the GPU)."""
    flat = position_ids.reshape(-1)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1] + 1
    # every row starts a segment, whatever its first position
    starts.view(position_ids.shape[0] if position_ids.dim() > 1 else 1, -1)[:, 0] = True
    idx = torch.nonzero(starts).flatten()
    cu = torch.cat([idx, idx.new_tensor([flat.numel()])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def _block_diagonal_mask(position_ids: torch.Tensor, length: int) -> torch.Tensor:
    """Bool [batch, 1, seq, seq], True = attend: causal, within the same segment only."""
    pid = position_ids if position_ids.dim() > 1 else position_ids[None]
    first = pid[:, :1] - 1
    segment = (torch.diff(pid, prepend=first, dim=-1) != 1).cumsum(-1)
    same = segment[:, :, None] == segment[:, None, :]
    idx = torch.arange(length, device=pid.device)
    return (same & (idx[:, None] >= idx[None, :]))[:, None]


def _varlen_ok(module: Any, query: torch.Tensor, dropout: float, scaling: float | None,
               kwargs: dict) -> bool:
    head_dim = query.shape[-1]
    standard = scaling is None or abs(scaling - head_dim ** -0.5) < 1e-9
    return (query.is_cuda and query.dtype in (torch.bfloat16, torch.float16) and not dropout
            and head_dim <= _MAX_HEAD_DIM and _varlen() is not None
            and (standard or "scale" in _varlen_params())
            and not (kwargs.get("sliding_window") or getattr(module, "sliding_window", None))
            and not kwargs.get("softcap"))


def varlen_attention_forward(module: Any, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             dropout: float = 0.0, scaling: float | None = None,
                             **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: q/k/v [batch, heads, seq, head_dim] in,
    ([batch, seq, heads, head_dim], None) out."""
    position_ids = kwargs.get("position_ids")
    cu = kwargs.get("cu_seq_lens_q")
    if attention_mask is not None or not _varlen_ok(module, query, dropout, scaling, kwargs) \
            or (cu is None and position_ids is None):
        return _sdpa(module, query, key, value, attention_mask, dropout, scaling, kwargs)
    if cu is None:
        cu, longest = _offsets_from_positions(position_ids)
    else:
        longest = int(kwargs["max_length_q"])
    batch, heads, seq, head_dim = query.shape
    kv_heads = key.shape[1]
    params = _varlen_params()
    extra: dict[str, Any] = {}
    if kv_heads != heads:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:  # this torch's varlen_attn takes equal head counts only
            key = key.repeat_interleave(heads // kv_heads, dim=1)
            value = value.repeat_interleave(heads // kv_heads, dim=1)
            kv_heads = heads
    if "window_size" in params:
        extra["window_size"] = (-1, 0)  # causal: everything to the left, nothing right
    else:
        extra["is_causal"] = True
    if scaling is not None and "scale" in params:
        extra["scale"] = scaling
    q = query.transpose(1, 2).reshape(batch * seq, heads, head_dim)
    k = key.transpose(1, 2).reshape(batch * seq, kv_heads, head_dim)
    v = value.transpose(1, 2).reshape(batch * seq, kv_heads, head_dim)
    cu = cu.to(device=q.device, dtype=torch.int32)
    out = _varlen()(q, k, v, cu, cu, longest, longest, **extra)
    if isinstance(out, tuple):
        out = out[0]
    return out.reshape(batch, seq, heads, head_dim), None


def _sdpa(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          attention_mask: torch.Tensor | None, dropout: float, scaling: float | None,
          kwargs: dict) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    if attention_mask is None and position_ids is not None:
        # no mask came (packed rows): keep the samples apart the slow way
        attention_mask = _block_diagonal_mask(position_ids, query.shape[2])
    rest = {k: v for k, v in kwargs.items()
            if k not in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")}
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                  scaling=scaling, **rest)
