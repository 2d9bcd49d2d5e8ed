"""The order of training rows: Axolotl's merge, shuffle, shard and curriculum rules.

- `shuffle_before_merging_datasets`: each dataset's rows are shuffled on their own first.
- `shuffle_merged_datasets` (default true): the merged rows are shuffled with `seed`.
- `curriculum_sampling`: a single dataset is kept in file order (as in Axolotl, several
  datasets are still shuffled together unless `shuffle_merged_datasets: false`, which
  validation points out); the trainer then samples rows sequentially and packing keeps that
  order (trainer/data/packing.py `in_order`).
- `dataset_shard_num` / `dataset_shard_idx`: one contiguous shard of the merged rows
  (datasets' `Dataset.shard`), before the validation split.
"""

from __future__ import annotations

import logging
from typing import Any

from trainer.data.dedup import drop_exact_duplicates
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.data")


def merge_rows(parts: list[Any], cfg: TrainingConfig) -> Any:
    import datasets

    if cfg.shuffle_before_merging_datasets and len(parts) > 1:
        parts = [part.shuffle(seed=cfg.seed) for part in parts]
    merged = datasets.concatenate_datasets(parts)
    keep_order = cfg.curriculum_sampling and len(parts) == 1
    if cfg.shuffle_merged_datasets and not keep_order:
        merged = merged.shuffle(seed=cfg.seed)
    return merged


def take_shard(ds: Any, cfg: TrainingConfig) -> Any:
    if not cfg.dataset_shard_num:
        return ds
    log.info("using shard %d of %d (%d rows of %d)", cfg.dataset_shard_idx,
             cfg.dataset_shard_num, len(ds) // cfg.dataset_shard_num, len(ds))
    return ds.shard(num_shards=cfg.dataset_shard_num, index=cfg.dataset_shard_idx,
                    contiguous=True)


def choose_rows(ds: Any, cfg: TrainingConfig, section: str) -> tuple[Any, int | None]:
    """Deduplicate (when asked), then shard: (rows, exact duplicates dropped; None when
    deduplication is off)."""
    dropped = None
    if cfg.dataset_exact_deduplication:
        ds, dropped = drop_exact_duplicates(ds)
        if dropped:
            log.warning("%s: dropped %d exact duplicate rows (dataset_exact_deduplication)",
                        section, dropped)
    return take_shard(ds, cfg), dropped
