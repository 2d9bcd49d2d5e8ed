"""A corpus config (tests/fixtures/axolotl/corpus/) made runnable on a tiny model: the
model, the data and the output swapped, the rest of the file unchanged. The one place the
corpus tests make that swap."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli_runner import REPO
from tests.train_helpers import TINY_DATA

CORPUS = REPO / "tests/fixtures/axolotl/corpus"


def tiny_corpus_copy(name: str, tmp_path: Path, model_dir: Path, *, data: str | None = None,
                     drop=(), **overrides) -> Path:
    """Each dataset's path becomes the tiny data file of the same name, or, with `data`, the
    first dataset reads TINY_DATA/`data`. `drop`: keys the tiny model, its tokenizer or a
    CPU cannot serve. `overrides` replace top-level keys after the swap; an override of None
    removes the key."""
    spec = yaml.safe_load((CORPUS / name).read_text())
    spec["base_model"] = str(model_dir)
    if data:
        spec["datasets"][0]["path"] = str(TINY_DATA / data)
    else:
        for entry in [*spec["datasets"], *(spec.get("test_datasets") or [])]:
            entry["path"] = str(TINY_DATA / Path(entry["path"]).name)
    for key in drop:
        spec.pop(key, None)
    spec.update(output_dir=str(tmp_path / "out"), dataset_prepared_path=str(tmp_path / "prep"),
                **overrides)
    for key in [key for key, value in overrides.items() if value is None]:
        del spec[key]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_dataset(data: str) -> list[dict[str, str]]:
    """One tiny data file as the whole `datasets:` list, typed by its content."""
    return [{"path": str(TINY_DATA / data),
             "type": "chat_template" if data == "chat.jsonl" else "alpaca"}]
