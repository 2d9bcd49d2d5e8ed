"""`prepare_data`: spec + tokenizer -> tokenized (and packed) train/eval sets, cached.

load each `datasets[i]` -> encode rows (format + masks) -> drop over-length and untrained
rows (counted) -> merge (shuffled with `seed` as trainer/data/row_order.py says) -> exact
duplicates and `dataset_shard_*` -> val split or `test_datasets` -> pack -> cache.
On a multi-process run call it on one process first (e.g. accelerate's
`main_process_first`), so the others read the cache entry it wrote.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.data.cache import cache_key, load_entry, save_entry
from trainer.data.describe import describe_rows
from trainer.data.encode import n_targets
from trainer.data.formats import make_encoder
from trainer.data.loading import DataSourceError, load_spec
from trainer.data.packing import pack_dataset, packing_efficiency
from trainer.data.row_order import choose_rows, merge_rows
from trainer.torch_free.training import DatasetSpec, TrainingConfig

__all__ = ["PreparedData", "describe_rows", "prepare_data"]

log = logging.getLogger("ft.data")


@dataclass
class PreparedData:
    train: Any  # datasets.Dataset
    eval: Any | None
    stats: dict[str, Any] = field(default_factory=dict)


class _Counted:
    """Adds per-row `_length` and `_targets` while encoding, so filtering stays in arrow."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = self.encoder(batch)
        out["_length"] = [len(x) for x in out["input_ids"]]
        out["_targets"] = [n_targets(x) for x in out["labels"]]
        return out


def prepare_data(cfg: TrainingConfig, tokenizer: Any, *, show_progress: bool = True
                 ) -> PreparedData:
    key = cache_key(cfg, tokenizer)
    entry = Path(cfg.dataset_prepared_path) / key if cfg.dataset_prepared_path else None
    if entry is not None and (hit := load_entry(entry)) is not None:
        train, eval_ds, stats = hit
        return PreparedData(train, eval_ds, {**stats, "cache": "hit", "cache_path": str(entry)})
    with _progress_bars(show_progress):
        train, eval_ds, stats = _build(cfg, tokenizer, key, show_progress)
        stats["cache_path"] = str(entry) if entry else None
        if entry is not None:
            save_entry(entry, train, eval_ds, stats)
    stats["cache"] = "miss" if entry else "off"
    return PreparedData(train, eval_ds, stats)


def _build(cfg: TrainingConfig, tokenizer: Any, key: str, show_progress: bool
           ) -> tuple[Any, Any | None, dict[str, Any]]:
    import datasets

    parts, per_dataset = _encode_all(cfg.datasets, "datasets", cfg, tokenizer, key)
    mixed, duplicates = choose_rows(merge_rows(parts, cfg), cfg, "datasets")
    if len(mixed) == 0:
        raise DataSourceError(f"no training samples left: {per_dataset}")
    eval_ds = None
    if cfg.test_datasets:
        if cfg.val_set_size:
            log.warning("val_set_size is ignored: test_datasets are the eval set")
        eval_parts, _ = _encode_all(cfg.test_datasets, "test_datasets", cfg, tokenizer, key)
        eval_ds, _ = choose_rows(datasets.concatenate_datasets(eval_parts), cfg, "test_datasets")
    elif cfg.val_set_size > 0:
        split = mixed.train_test_split(test_size=cfg.val_set_size, shuffle=False)
        mixed, eval_ds = split["train"], split["test"]
    stats = {**_summary(mixed, per_dataset), "dropped_duplicates": duplicates}
    train = _finish(mixed, cfg, cfg.sample_packing, show_progress)
    stats.update(rows=len(train), sequence_len=cfg.sequence_len,
                 packing_efficiency=_efficiency(stats["tokens"], len(train), cfg))
    if eval_ds is not None:
        eval_packing = (cfg.sample_packing if cfg.eval_sample_packing is None
                        else cfg.eval_sample_packing)
        stats["eval_samples"] = len(eval_ds)
        eval_ds = _finish(eval_ds, cfg, eval_packing, show_progress)
        stats["eval_rows"] = len(eval_ds)
    return train, eval_ds, stats


def _encode_all(specs: list[DatasetSpec], section: str, cfg: TrainingConfig, tokenizer: Any,
                key: str) -> tuple[list[Any], list[dict[str, Any]]]:
    parts, infos = [], []
    for i, spec in enumerate(specs):
        ds, info = _encode_one(spec, f"{section}[{i}]", cfg, tokenizer, f"{key}-{section}-{i}")
        parts.append(ds)
        infos.append(info)
    return parts, infos


def _encode_one(spec: DatasetSpec, where: str, cfg: TrainingConfig, tokenizer: Any,
                fingerprint: str) -> tuple[Any, dict[str, Any]]:
    raw = load_spec(spec, where)
    try:
        encoded = raw.map(_Counted(make_encoder(spec, cfg, tokenizer)), batched=True,
                          remove_columns=raw.column_names, num_proc=cfg.dataset_processes,
                          desc=f"Tokenizing {where}", load_from_cache_file=False,
                          new_fingerprint=fingerprint)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataSourceError(f"{where} ({spec.path}, type {spec.type}): {exc}") from exc
    lengths = encoded.with_format("arrow")["_length"].to_pylist()
    targets = encoded.with_format("arrow")["_targets"].to_pylist()
    keep = [i for i, (n, t) in enumerate(zip(lengths, targets, strict=True))
            if n <= cfg.sequence_len and t > 0]
    over = sum(1 for n in lengths if n > cfg.sequence_len)
    info = {"path": spec.path, "type": spec.type, "rows_in": len(raw), "samples": len(keep),
            "dropped_overlength": over, "dropped_untrained": len(lengths) - len(keep) - over}
    if over:
        log.warning("%s: dropped %d rows longer than sequence_len %d", where, over,
                    cfg.sequence_len)
    if info["dropped_untrained"]:
        log.warning("%s: dropped %d rows with no trained tokens", where,
                    info["dropped_untrained"])
    return encoded.select(keep), info


def _summary(ds: Any, per_dataset: list[dict[str, Any]]) -> dict[str, Any]:
    lengths = ds.with_format("arrow")["_length"].to_pylist()
    targets = ds.with_format("arrow")["_targets"].to_pylist()
    return {
        "datasets": per_dataset, "samples": len(ds), "tokens": sum(lengths),
        "trained_tokens": sum(targets),
        "dropped_overlength": sum(d["dropped_overlength"] for d in per_dataset),
        "dropped_untrained": sum(d["dropped_untrained"] for d in per_dataset),
    }


def _finish(ds: Any, cfg: TrainingConfig, packing: bool, show_progress: bool) -> Any:
    ds = ds.remove_columns(["_length", "_targets"])
    if packing:
        return pack_dataset(ds, cfg.sequence_len, seed=cfg.seed, show_progress=show_progress,
                            in_order=bool(cfg.curriculum_sampling))
    return ds.flatten_indices()


def _efficiency(tokens: int, rows: int, cfg: TrainingConfig) -> float | None:
    return round(packing_efficiency(tokens, rows, cfg.sequence_len), 4) \
        if cfg.sample_packing else None


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """datasets' own tqdm bars on or off for the duration, then restored."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    if enabled:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_disabled:
            datasets.disable_progress_bars()
        else:
            datasets.enable_progress_bars()
