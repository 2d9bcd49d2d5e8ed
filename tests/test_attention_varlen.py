"""ft_varlen's pieces that run without a GPU: the sample offsets it derives from position
ids (the same as the collator's) and its choice by `choose_attention`. The flash kernel
itself is checked on the GPU (bench/varlen_check.py)."""

from __future__ import annotations

import torch

from trainer.kernels import attention_varlen
from trainer.kernels.attention_varlen import _offsets_from_positions, segment_offsets


def test_offsets_from_positions_match_the_collator_rule():
    rows = [[0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 0, 1, 2], [5, 6, 0, 1, 2, 3, 4]]
    cu, longest = _offsets_from_positions(torch.tensor(rows))
    starts = [s for k, row in enumerate(rows) for s in segment_offsets(row, start=7 * k)]
    assert cu.dtype == torch.int32
    assert cu.tolist() == starts + [21] == [0, 3, 7, 11, 14, 16, 21]
    assert longest == 5


def test_fallback_keeps_packed_samples_apart_like_each_alone():
    """CPU (no varlen kernel): sdpa with the block-diagonal mask from the position ids."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 7, 16) for _ in range(3))
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])

    class Module:
        is_causal = True
        num_key_value_groups = 1
        training = False

    out, _ = attention_varlen.varlen_attention_forward(Module(), q, k, v, None,
                                                       position_ids=pos)
    for a, b in ((0, 3), (3, 7)):
        alone = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True)
        torch.testing.assert_close(out[0, a:b], alone[0].transpose(0, 1))
