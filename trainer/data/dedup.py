"""`dataset_exact_deduplication`: drop a tokenized row that repeats an earlier one exactly.

As in Axolotl, a row is a duplicate when everything the model is trained on is identical
(its token ids and its label mask); the first occurrence stays. The merged training rows are
deduplicated before the validation split, so no eval row repeats a train row; `test_datasets`
are deduplicated among themselves. Hashes are streamed in batches: memory stays one digest
per unique row.
"""

from __future__ import annotations

import hashlib
from typing import Any

_COLUMNS = ("input_ids", "labels")
_BATCH = 10_000


def drop_exact_duplicates(ds: Any) -> tuple[Any, int]:
    """(rows of `ds` without exact repeats, in their order; how many were dropped)."""
    seen: set[bytes] = set()
    keep: list[int] = []
    table = ds.with_format("arrow")
    for start in range(0, len(ds), _BATCH):
        batch = table[start:start + _BATCH]
        columns = [batch[name].to_pylist() for name in _COLUMNS]
        for offset, row in enumerate(zip(*columns, strict=True)):
            digest = hashlib.sha256(repr(row).encode()).digest()
            if digest not in seen:
                seen.add(digest)
                keep.append(start + offset)
    dropped = len(ds) - len(keep)
    return (ds.select(keep) if dropped else ds), dropped
