"""The corpus's named-template config (tests/fixtures/axolotl/corpus/chat-qwen3-named-template.yml)
on the tiny model: its rows are rendered by ft's `qwen3` although the tiny tokenizer ships a
ChatML template of its own (which the old rule let win), and it trains 3 steps."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests import fixtures_tiny
from tests.cli_runner import REPO, run_ft
from tests.train_helpers import TINY_DATA, summary

tiny_model_dir = fixtures_tiny.tiny_model_dir
CONFIG = REPO / "tests/fixtures/axolotl/corpus/chat-qwen3-named-template.yml"


def _tiny_copy(tmp_path: Path, model_dir: Path) -> Path:
    spec = yaml.safe_load(CONFIG.read_text())
    spec["base_model"] = str(model_dir)
    spec["datasets"][0]["path"] = str(TINY_DATA / "chat.jsonl")
    spec.update(output_dir=str(tmp_path / "out"), dataset_prepared_path=str(tmp_path / "prep"),
                max_steps=3, sequence_len=256, flash_attention=False, micro_batch_size=1,
                gradient_accumulation_steps=1, bf16=False, gradient_checkpointing=False)
    path = tmp_path / CONFIG.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_named_qwen3_renders_its_own_layout_and_trains(tmp_path, tiny_model_dir):
    from orchestrator.spec.load import parse_spec
    from trainer.data.pipeline import prepare_data
    from trainer.models.load import load_tokenizer

    path = _tiny_copy(tmp_path, tiny_model_dir)
    cfg = parse_spec(path.read_text(), str(path)).training
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg, tokenizer, show_progress=False)
    text = tokenizer.decode(data.train[0]["input_ids"])
    assert "<|im_start|>assistant\n<think>\n\n</think>\n\n" in text  # Qwen 3's, not ChatML
    assert not text.startswith("<s>")  # the tiny tokenizer's own template writes BOS; qwen3 not
    result = run_ft("train", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(tmp_path / "out")["global_step"] == 3
