"""Packing and collation, and THE no-leak test: a sample's logits inside a packed row equal
its logits when run alone, with the attention kernels transformers can run here."""

from __future__ import annotations

import itertools
import os
import random
from typing import Any

import pytest
import torch

from tests import fixtures_tiny
from tests.fixtures_tiny import make_cfg
from trainer.data.collate import make_collator
from trainer.data.packing import pack_rows, packing_efficiency, plan_bins
from trainer.kernels import attention_varlen

# The tiny model fixtures (tests/conftest.py may import them as well).
tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer

SLOW_OK = os.environ.get("FT_SLOW_TESTS") == "1"


def test_plan_bins_fits_every_sample_once_and_is_deterministic():
    rng = random.Random(0)
    lengths = [rng.randint(1, 64) for _ in range(300)]
    bins = plan_bins(lengths, 64)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert bins == plan_bins(lengths, 64)
    lower_bound = -(-sum(lengths) // 64)
    assert len(bins) <= lower_bound * 1.1 + 1  # best-fit decreasing is near optimal here


def test_plan_bins_rejects_a_sample_longer_than_a_row():
    with pytest.raises(ValueError, match="more than sequence_len 8"):
        plan_bins([3, 9], 8)


def _samples(n: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    ids = [[rng.randint(6, 500) for _ in range(rng.randint(2, 30))] for _ in range(n)]
    return ids, [list(x) for x in ids]


def test_pack_rows_restarts_positions_and_masks_each_first_label():
    ids, labels = _samples(40)
    packed = pack_rows(ids, labels, 64, seed=1)
    assert packed == pack_rows(ids, labels, 64, seed=1)  # deterministic given the seed
    assert packed != pack_rows(ids, labels, 64, seed=2)  # and the seed matters
    seen = []
    for row_ids, row_labels, pos in zip(*packed.values(), strict=True):
        assert len(row_ids) == len(row_labels) == len(pos) <= 64
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        for a, b in itertools.pairwise(starts):
            assert pos[a:b] == list(range(b - a))
            assert row_labels[a] == -100 and row_labels[a + 1:b] == row_ids[a + 1:b]
            seen.append(tuple(row_ids[a:b]))
    assert sorted(seen) == sorted(tuple(x) for x in ids)
    total = sum(map(len, ids))
    eff = packing_efficiency(total, len(packed["input_ids"]), 64)
    assert 0.8 < eff <= 1.0


def _packed_cfg(model_dir: Any, attn: str | None, **fields: Any) -> Any:
    return make_cfg(model_dir, [{"path": "x", "type": "completion"}], sample_packing=True,
                    attn_implementation=attn, sequence_len=64, **fields)


def _rows() -> list[dict[str, list[int]]]:
    return [
        {"input_ids": [1, 10, 11, 1, 20, 21, 22], "labels": [-100, 10, 11, -100, 20, 21, 22],
         "position_ids": [0, 1, 2, 0, 1, 2, 3]},
        {"input_ids": [1, 30, 31, 32], "labels": [-100, 30, 31, 32],
         "position_ids": [0, 1, 2, 3]},
    ]


def test_collator_packed_rows_for_sdpa_have_no_attention_mask(tiny_tokenizer, tiny_model_dir):
    batch = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer)(_rows())
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    pad = tiny_tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[1, 10, 11, 1, 20, 21, 22],
                                           [1, 30, 31, 32, pad, pad, pad]]
    # padding is a segment of its own: positions restart, labels masked
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert batch["labels"][1].tolist() == [-100, 30, 31, 32, -100, -100, -100]


@pytest.mark.parametrize("attn", ["flash_attention_2", None])
def test_collator_flattens_packed_rows_for_flash_or_unknown_kernel(
        tiny_tokenizer, tiny_model_dir, attn):
    batch = make_collator(_packed_cfg(tiny_model_dir, attn), tiny_tokenizer)(_rows())
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].shape == (1, 11)  # flash's varlen path needs batch size 1
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, 10, 11, -100, 20, 21, 22, -100, 30, 31, 32]]


def test_collator_sends_sample_offsets_for_varlen_attention(tiny_tokenizer, tiny_model_dir):
    """ft_varlen gets each sample's start in the flattened [batch, seq] layout (the padding
    is a segment of its own) and the longest one as an int: nothing to read back from the
    GPU in the attention."""
    batch = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer,
                          attn_implementation="ft_varlen")(_rows())
    assert batch["input_ids"].shape == (2, 7)  # rows stay rows
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 7, 11, 14]
    assert batch["cu_seq_lens_k"] is batch["cu_seq_lens_q"]
    assert batch["max_length_q"] == batch["max_length_k"] == 4
    assert isinstance(batch["max_length_q"], int)
    # every label, position and token is as without the offsets
    plain = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer)(_rows())
    for key in plain:
        assert torch.equal(batch[key], plain[key])


def test_collator_masks_a_sample_start_label_even_if_the_row_did_not(
        tiny_tokenizer, tiny_model_dir):
    rows = [{"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "position_ids": [0, 1, 0, 1]}]
    batch = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer)(rows)
    assert batch["labels"].tolist() == [[-100, 6, -100, 8]]


def test_collator_pads_packed_rows_to_sequence_len_when_asked(tiny_tokenizer, tiny_model_dir):
    cfg = _packed_cfg(tiny_model_dir, "sdpa", pad_to_sequence_len=True)
    batch = make_collator(cfg, tiny_tokenizer)(_rows())
    assert batch["input_ids"].shape == (2, 64)


def test_collator_unpacked_pads_to_longest_with_attention_mask(tiny_tokenizer, tiny_model_dir):
    cfg = make_cfg(tiny_model_dir, [{"path": "x", "type": "completion"}])
    rows = [{"input_ids": [1, 10, 11], "labels": [-100, 10, 11]},
            {"input_ids": [1, 20], "labels": [-100, 20]}]
    batch = make_collator(cfg, tiny_tokenizer)(rows)
    pad = tiny_tokenizer.pad_token_id
    assert pad != tiny_tokenizer.eos_token_id
    assert batch["input_ids"].tolist() == [[1, 10, 11], [1, 20, pad]]
    assert batch["labels"].tolist() == [[-100, 10, 11], [-100, 20, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    cfg = cfg.model_copy(update={"pad_to_sequence_len": True})
    assert make_collator(cfg, tiny_tokenizer)(rows)["input_ids"].shape == (2, 256)


# --- no leak across packed samples ---------------------------------------------------------

def _leak_setup(tok: Any) -> tuple[list[list[int]], dict[str, list[list[int]]]]:
    """Real chat/alpaca-like token rows of different lengths, packed into 64-token rows."""
    texts = ["The ocean covers most of the surface of the earth.",
             "Snow is frozen water that falls as soft white flakes.",
             "A bicycle has two wheels.", "Bread is baked from flour, water, salt and yeast.",
             "Honey is made by bees.", "The moon orbits the earth and reflects sunlight."]
    samples = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]]
               for t in texts]
    packed = pack_rows(samples, samples, 64, seed=0)
    assert len(packed["input_ids"]) >= 2, "want several packed rows of unequal length"
    return samples, packed


def _as_rows(packed: dict[str, list[list[int]]]) -> list[dict[str, list[int]]]:
    return [dict(zip(packed, values, strict=True))
            for values in zip(*packed.values(), strict=True)]


def _assert_no_leak(model: Any, batch: dict[str, torch.Tensor], samples: list[list[int]],
                    packed: dict[str, list[list[int]]], flat: bool) -> None:
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits
        alone = {tuple(s): model(input_ids=torch.tensor([s]), use_cache=False).logits[0]
                 for s in samples}
    offset = 0
    checked = 0
    rows = zip(packed["input_ids"], packed["position_ids"], strict=True)
    for r, (row_ids, pos) in enumerate(rows):
        if not flat:
            offset = 0
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        for a, b in itertools.pairwise(starts):
            got = logits[0 if flat else r, offset + a:offset + b]
            torch.testing.assert_close(got, alone[tuple(row_ids[a:b])], atol=1e-5, rtol=0)
            checked += 1
        offset += len(row_ids) if flat else 0
    assert checked == len(samples)


ATTN_CASES = [
    pytest.param("sdpa", id="sdpa"),
    # on the CPU its sdpa fallback with the block-diagonal mask from the position ids
    pytest.param("ft_varlen", id="ft_varlen"),
    pytest.param("eager", id="eager"),
    pytest.param("flex_attention", id="flex_attention", marks=[
        pytest.mark.slow,
        pytest.mark.skipif(not SLOW_OK, reason="flex_attention on CPU compiles kernels with "
                           "inductor + g++ (~40 s); set FT_SLOW_TESTS=1 to run"),
    ]),
]


@pytest.mark.parametrize("attn", ATTN_CASES)
@pytest.mark.parametrize("flat", [False, True], ids=["rows", "flattened"])
def test_packed_logits_equal_each_sample_alone(tiny_model_dir, tiny_tokenizer, attn, flat):
    from transformers import AutoModelForCausalLM

    if attn == "flex_attention":
        # A second compile with new shapes goes dynamic, which fails in inductor's CPU C++
        # codegen here; a fresh compile per layout works.
        torch._dynamo.reset()
    if attn == "ft_varlen":
        attention_varlen.register()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    model.eval()
    samples, packed = _leak_setup(tiny_tokenizer)
    rows = _as_rows(packed)
    layout = "flash_attention_2" if flat else attn
    spec_attn = "sdpa" if attn == "ft_varlen" else attn
    batch = make_collator(_packed_cfg(tiny_model_dir, spec_attn), tiny_tokenizer,
                          attn_implementation=layout)(rows)
    assert ("attention_mask" not in batch) and (batch["input_ids"].shape[0] == 1) == flat
    _assert_no_leak(model, batch, samples, packed, flat)


def test_packed_loss_equals_loss_of_the_samples_alone(tiny_model_dir, tiny_tokenizer):
    """The boundary labels are masked: no target is predicted from another sample."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    model.eval()
    samples, packed = _leak_setup(tiny_tokenizer)
    rows = _as_rows(packed)
    batch = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer)(rows)
    with torch.no_grad():
        packed_loss = model(**batch, use_cache=False).loss
        total, count = 0.0, 0
        for s in samples:
            ids = torch.tensor([s])
            total += model(input_ids=ids, labels=ids).loss.item() * (len(s) - 1)
            count += len(s) - 1
    assert int((batch["labels"][:, 1:] != -100).sum()) == count
    assert packed_loss.item() == pytest.approx(total / count, abs=1e-5)


def test_default_use_cache_defeats_packed_detection(tiny_model_dir, tiny_tokenizer):
    """Why the trainer must run with `model.config.use_cache = False`.

    With the config default (True) LlamaModel creates a DynamicCache, and
    `masking_utils._preprocess_mask_arguments` only looks for packed sequences when
    `past_key_values is None`: samples then attend to each other. If this test starts failing,
    transformers changed that rule; the requirement may then be relaxed.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
    model.eval()
    assert model.config.use_cache
    samples, packed = _leak_setup(tiny_tokenizer)
    rows = _as_rows(packed)
    batch = make_collator(_packed_cfg(tiny_model_dir, "sdpa"), tiny_tokenizer)(rows)
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        clean = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      use_cache=False).logits
    assert (leaky - clean).abs().max() > 1e-3
