"""The tiny offline model + tokenizer, built once per test session (no model hub needed).

`tests/conftest.py` imports `tiny_model_dir`; test modules may import it too. Every copy builds
into the same session directory and the build skips when it is already there, so the model is
trained only once however many modules import the fixture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.getbasetemp() / "tiny-model")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def trained_runs(tokenizer: Any, input_ids: list[int], labels: list[int]) -> list[str]:
    """The trained text (labels != -100), one decoded string per contiguous run."""
    runs: list[list[int]] = []
    prev = False
    for tok, lab in zip(input_ids, labels, strict=True):
        trained = lab != -100
        if trained and not prev:
            runs.append([])
        if trained:
            assert lab == tok, "a trained label must equal its input token"
            runs[-1].append(tok)
        prev = trained
    return [tokenizer.decode(run) for run in runs]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_cfg(model_dir: Path, datasets: list[dict[str, Any]], **fields: Any) -> Any:
    """A TrainingConfig with only the data fields a test cares about."""
    from trainer.contract.training import TrainingConfig

    return TrainingConfig(base_model=str(model_dir), datasets=datasets,
                          **{"sequence_len": 256, **fields})
