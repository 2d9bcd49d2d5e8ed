"""Batches of rows -> tensors for `model(**batch)`.

Packed rows (they carry `position_ids`) get NO attention_mask: transformers then finds the
sample boundaries from the position ids (where they do not increase by exactly 1) and builds
a block-diagonal causal mask, so samples in one row never attend to each other:

- sdpa / eager / flex_attention: `masking_utils._preprocess_mask_arguments` calls
  `find_packed_sequence_indices(position_ids)` when `attention_mask is None` (and no cache);
  it works per row, so a [batch, seq] layout with per-row padding is fine.
- flash_attention_*: `modeling_flash_attention_utils._is_packed_sequence` only accepts
  batch size 1, and turns the position ids into varlen `cu_seqlens`. So for flash (and when
  the attention kernel is not known yet) the rows are flattened into one [1, total] row.

- ft_varlen (trainer/kernels/attention_varlen.py): the rows stay [batch, seq] and the collator also
  sends where every sample starts in the flattened batch (`cu_seq_lens_q/k`, int32) and the
  longest sample (`max_length_q/k`, ints), so the attention never reads them back from the GPU.

Padding of packed rows is a segment of its own (positions 0..k-1, label -100), so real tokens
never see it. The first label of every sample is -100: after the loss's shift it would be
predicted from the previous sample's last token.
"""

from __future__ import annotations

from typing import Any

import torch

from trainer.data.encode import IGNORE
from trainer.kernels.attention_varlen import NAME as VARLEN_ATTN
from trainer.kernels.attention_varlen import segment_offsets
from trainer.torch_free.training import TrainingConfig

# Kernels whose packed-sequence detection works on [batch, seq] rows (no flattening needed).
ROW_PACKING_ATTN = frozenset({"sdpa", "eager", "flex_attention", VARLEN_ATTN})


def attention_of(cfg: TrainingConfig) -> str | None:
    """The attention kernel the spec asks for (one answer: TrainingConfig's)."""
    return cfg.requested_attention


class Collator:
    """Pads unpacked rows (with attention_mask); lays out packed rows (see module docstring)."""

    def __init__(self, pad_id: int, *, flatten_packed: bool, pad_to: int | None,
                 sample_offsets: bool = False) -> None:
        self.pad_id = pad_id
        self.flatten_packed = flatten_packed
        self.pad_to = pad_to
        self.sample_offsets = sample_offsets  # packed batches carry cu_seq_lens (varlen)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ValueError("empty batch")
        if "position_ids" in rows[0]:
            return self.packed(rows)
        return self.padded(rows)

    def padded(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = self._width(rows)
        ids, labels, mask = [], [], []
        for row in rows:
            n = len(row["input_ids"])
            pad = width - n
            ids.append(list(row["input_ids"]) + [self.pad_id] * pad)
            labels.append(list(row.get("labels") or row["input_ids"]) + [IGNORE] * pad)
            mask.append([1] * n + [0] * pad)
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}

    def packed(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        width = self._width(rows) if (self.pad_to or not self.flatten_packed) else 0
        ids, labels, pos = [], [], []
        for row in rows:
            pad = max(width - len(row["input_ids"]), 0)
            ids.append(list(row["input_ids"]) + [self.pad_id] * pad)
            row_pos = list(row["position_ids"]) + list(range(pad))
            row_labels = list(row["labels"]) + [IGNORE] * pad
            pos.append(row_pos)
            labels.append([IGNORE if p == 0 else lab
                           for p, lab in zip(row_pos, row_labels, strict=True)])
        offsets = self._offsets(pos) if self.sample_offsets else {}
        if self.flatten_packed:
            ids, labels, pos = ([sum(col, [])] for col in (ids, labels, pos))
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "position_ids": torch.tensor(pos), **offsets}

    @staticmethod
    def _offsets(pos: list[list[int]]) -> dict[str, Any]:
        """Start of every sample (and padding segment) in the flattened batch, then its end;
        rows never share a segment."""
        starts: list[int] = []
        for k, row in enumerate(pos):
            starts += segment_offsets(row, start=sum(len(r) for r in pos[:k]))
        ends = starts[1:] + [sum(len(r) for r in pos)]
        cu = torch.tensor(starts + ends[-1:], dtype=torch.int32)
        longest = max(b - a for a, b in zip(starts, ends, strict=True))
        return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest,
                "max_length_k": longest}

    def _width(self, rows: list[dict[str, Any]]) -> int:
        longest = max(len(r["input_ids"]) for r in rows)
        return max(longest, self.pad_to or 0)


def make_collator(cfg: TrainingConfig, tokenizer: Any, *,
                  attn_implementation: str | None = None) -> Collator:
    """`attn_implementation`: the kernel the model was actually loaded with, when known.

    Unknown or flash kernels get flattened packed batches: correct with every kernel.
    """
    attn = attn_implementation or attention_of(cfg)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return Collator(pad_id, flatten_packed=attn not in ROW_PACKING_ATTN,
                    pad_to=cfg.sequence_len if cfg.pad_to_sequence_len else None,
                    sample_offsets=attn == VARLEN_ATTN)
