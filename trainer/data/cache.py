"""Prepared-data cache: `<dataset_prepared_path>/<hash>/{train,eval,stats.json}`.

The hash covers everything that changes the tokenized rows: the data fields of the spec, the
tokenizer's identity (source, vocabulary size, special ids, chat template) and the size and
mtime of local data files, so editing a data file or the template misses the cache instead of
training on stale rows. Entries are written to a temporary directory of their own and
renamed into place, so a crashed preprocess never leaves a half-written entry that a later
run would trust, and concurrent writers (one per node) never collide.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any

from trainer.torch_free.training import DatasetSpec, TrainingConfig

# Bump when the meaning of the stored rows changes (masking rules, packing layout, ...).
FORMAT_VERSION = 3  # 2: named chat templates per family, train_on_eot, eot_tokens
# 3: named templates render as Axolotl's (ft's own jinja always), chat rows get no added BOS,
#    Axolotl's masking rules (turn diff spans, EOS-only closers)

DATA_FIELDS = ("sequence_len", "sample_packing", "eval_sample_packing", "chat_template",
               "chat_template_jinja", "default_system_message", "train_on_inputs",
               "val_set_size", "seed", "eot_tokens", "chat_template_kwargs",
               "dataset_exact_deduplication", "shuffle_merged_datasets",
               "shuffle_before_merging_datasets", "curriculum_sampling", "dataset_shard_num",
               "dataset_shard_idx")


def cache_key(cfg: TrainingConfig, tokenizer: Any) -> str:
    """A short hex digest of every input that shapes the prepared rows."""
    payload = {
        "format": FORMAT_VERSION,
        "datasets": [_spec_identity(s) for s in cfg.datasets],
        "test_datasets": [_spec_identity(s) for s in cfg.test_datasets or []],
        "fields": {name: getattr(cfg, name) for name in DATA_FIELDS},
        "tokenizer": tokenizer_identity(cfg, tokenizer),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tokenizer_identity(cfg: TrainingConfig, tokenizer: Any) -> dict[str, Any]:
    return {
        "source": cfg.tokenizer_config or cfg.base_model,
        "revision": cfg.revision_of_model,
        "class": type(tokenizer).__name__,
        "vocab": len(tokenizer),
        "special": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
        "chat_template": getattr(tokenizer, "chat_template", None),
        "special_tokens": cfg.special_tokens.model_dump() if cfg.special_tokens else None,
        "tokens": cfg.tokens,
    }


def _spec_identity(spec: DatasetSpec) -> dict[str, Any]:
    ident = spec.model_dump()
    path = Path(spec.path).expanduser()
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        ident["files"] = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return ident


def load_entry(entry: Path) -> tuple[Any, Any, dict[str, Any]] | None:
    """(train, eval or None, stats) from a complete entry, else None."""
    import datasets

    stats_file = entry / "stats.json"
    if not stats_file.is_file():
        return None
    stats = json.loads(stats_file.read_text())
    train = datasets.load_from_disk(str(entry / "train"))
    eval_ds = datasets.load_from_disk(str(entry / "eval")) if (entry / "eval").is_dir() else None
    return train, eval_ds, stats


def save_entry(entry: Path, train: Any, eval_ds: Any, stats: dict[str, Any]) -> None:
    """Write a private temporary directory, then rename it into place.

    Every node's local rank 0 may prepare the same entry at once (one per node, whether or
    not the nodes share the cache directory). Containers give those processes the same pid
    and often the same hostname, so the temporary name also carries random bytes: two
    writers never share a directory. The rename is atomic; the loser of the race finds the
    winner's entry, built from the same inputs (the key), and keeps that one.
    """
    tmp = write_temporary(entry, train, eval_ds, stats)
    try:
        publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temporary_name(entry: Path) -> Path:
    token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    return entry.with_name(f".{entry.name}.tmp-{token}")


def write_temporary(entry: Path, train: Any, eval_ds: Any, stats: dict[str, Any]) -> Path:
    tmp = temporary_name(entry)
    tmp.mkdir(parents=True)  # never exist_ok: a shared temporary is the bug this prevents
    try:
        train.save_to_disk(str(tmp / "train"))
        if eval_ds is not None:
            eval_ds.save_to_disk(str(tmp / "eval"))
        # stats.json last: its presence is what makes an entry complete (load_entry).
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def publish(tmp: Path, entry: Path) -> bool:
    """Rename `tmp` to `entry`; False when another writer's complete entry was there first
    (then `tmp`, the same rows, is discarded)."""
    try:
        tmp.rename(entry)
        return True
    except OSError:  # ENOTEMPTY / EEXIST: the entry exists
        if not (entry / "stats.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
