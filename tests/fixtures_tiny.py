"""The tiny offline model + tokenizer, and one LoRA run of it, built once per test session
(no model hub needed).

`tests/conftest.py` imports these fixtures. A test module may import `tiny_model_dir` too:
every copy builds into the same session directory and the build skips when it is already
there, so the model is built only once however many modules import the fixture.
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
def tiny_lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny example's LoRA run as `write_tiny_spec` writes it (8 steps, a checkpoint and
    an eval at 4 and 8, micro batch 4), trained once per session (per xdist worker) for the
    tests that compare with it or resume from a copy of it: the directory of its spec.yaml,
    out/ and prepared/. Read it or copy it; never change it."""
    from tests.cli_runner import run_ft
    from tests.train_helpers import write_tiny_spec

    root = tmp_path_factory.mktemp("tiny-lora-run")
    result = run_ft("train", str(write_tiny_spec(root, tiny_model_dir)), cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return root


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
    from trainer.torch_free.training import TrainingConfig

    return TrainingConfig(base_model=str(model_dir), datasets=datasets,
                          **{"sequence_len": 256, **fields})
