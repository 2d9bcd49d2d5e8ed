"""A corpus config (tests/fixtures/axolotl/corpus/) made runnable on the tiny model: the
model, every data path and the output swapped, the rest of the file unchanged."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli_runner import REPO
from tests.train_helpers import TINY_DATA

CORPUS = REPO / "tests/fixtures/axolotl/corpus"


def tiny_corpus_copy(name: str, tmp_path: Path, model_dir: Path, **overrides) -> Path:
    """`overrides` replace top-level keys (e.g. max_steps) after the swap."""
    spec = yaml.safe_load((CORPUS / name).read_text())
    spec["base_model"] = str(model_dir)
    for entry in [*spec["datasets"], *(spec.get("test_datasets") or [])]:
        entry["path"] = str(TINY_DATA / Path(entry["path"]).name)
    spec.update(output_dir=str(tmp_path / "out"), dataset_prepared_path=str(tmp_path / "prep"),
                **overrides)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path
