"""Sample packing: tokenized samples -> rows of at most sequence_len tokens.

Best-fit decreasing (each sample, longest first, goes into the fullest row that still has
room), then the rows are shuffled with the seed: deterministic for a given input and seed.
Each packed row carries `position_ids` that restart at 0 for every sample; the collator and
transformers derive the per-sample (block-diagonal) attention from them. The first label of
every sample is masked: after the loss's shift it would be predicted from the previous sample.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable
from typing import Any

from trainer.data.encode import IGNORE


def plan_bins(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of samples per row. Every length must be <= capacity."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    # (room left, bin id), kept sorted: the first entry with room >= n is the best fit.
    rooms: list[tuple[int, int]] = []
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than sequence_len {capacity}")
        k = bisect.bisect_left(rooms, (n, -1))
        if k == len(rooms):
            bins.append([i])
            bisect.insort(rooms, (capacity - n, len(bins) - 1))
            continue
        room, b = rooms.pop(k)
        bins[b].append(i)
        bisect.insort(rooms, (room - n, b))
    return bins


def plan_bins_in_order(lengths: list[int], capacity: int) -> list[list[int]]:
    """Next fit: samples fill rows in their order, a new row when the next one does not fit
    (`curriculum_sampling`: row k holds samples that all come before row k+1's)."""
    bins: list[list[int]] = []
    room = 0
    for i, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"sample {i} has {n} tokens, more than sequence_len {capacity}")
        if not bins or n > room:
            bins.append([])
            room = capacity
        bins[-1].append(i)
        room -= n
    return bins


def pack_rows(input_ids: list[list[int]], labels: list[list[int]], capacity: int, *,
              seed: int, progress: Iterable[Any] | None = None,
              in_order: bool = False) -> dict[str, list[list[int]]]:
    """Packed columns `input_ids`, `labels`, `position_ids` (one entry per row). `in_order`
    keeps the samples' order (next fit, rows unshuffled) instead of best fit, shuffled."""
    lengths = [len(x) for x in input_ids]
    if in_order:
        bins = plan_bins_in_order(lengths, capacity)
    else:
        bins = plan_bins(lengths, capacity)
        random.Random(seed).shuffle(bins)
    out: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for members in progress(bins) if progress else bins:
        ids: list[int] = []
        labs: list[int] = []
        pos: list[int] = []
        for i in sorted(members):
            sample_labels = list(labels[i])
            sample_labels[0] = IGNORE
            ids += input_ids[i]
            labs += sample_labels
            pos += range(len(input_ids[i]))
        out["input_ids"].append(ids)
        out["labels"].append(labs)
        out["position_ids"].append(pos)
    return out


def pack_dataset(ds: Any, capacity: int, *, seed: int, show_progress: bool = False,
                 in_order: bool = False) -> Any:
    """A `datasets.Dataset` of packed rows built from `ds` (columns input_ids, labels)."""
    import datasets

    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        def progress(items: list[Any]) -> Any:
            return tqdm(items, desc="Packing", unit="row")

    table = ds.with_format("arrow")  # whole columns as Python lists: fast, honours indices
    packed = pack_rows(table["input_ids"].to_pylist(), table["labels"].to_pylist(), capacity,
                       seed=seed, progress=progress, in_order=in_order)
    return datasets.Dataset.from_dict(packed)


def packing_efficiency(n_tokens: int, n_rows: int, capacity: int) -> float:
    """Real tokens / (rows * sequence_len): 1.0 means no padding at all."""
    return n_tokens / (n_rows * capacity) if n_rows else 0.0
