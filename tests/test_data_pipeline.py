"""prepare_data end to end: loading, mixing, splits, dropping, packing stats, cache, describe;
and the tiny model itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import fixtures_tiny
from tests.fixtures_tiny import make_cfg, trained_runs, write_jsonl
from trainer.data import DataSourceError, describe_rows, prepare_data
from trainer.data.loading import load_spec

# The tiny model fixtures (tests/conftest.py may import them as well).
tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
TINY_DATA = REPO / "examples" / "tiny" / "data"


def _prep(tok: Any, model_dir: Path, datasets: list[dict[str, Any]], **fields: Any) -> Any:
    return prepare_data(make_cfg(model_dir, datasets, **fields), tok, show_progress=False)


def _alpaca_rows(n: int) -> list[dict[str, str]]:
    return [{"instruction": f"Say fact {i}.", "input": "", "output": f"Fact number {i}."}
            for i in range(n)]


# --- loading ---------------------------------------------------------------------------------

def test_local_formats_and_directories_load(tmp_path):
    import pandas as pd

    rows = _alpaca_rows(6)
    write_jsonl(tmp_path / "a.jsonl", rows[:3])
    (tmp_path / "b.json").write_text(json.dumps(rows[3:]))
    pd.DataFrame(rows).to_parquet(tmp_path / "c.parquet")
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    write_jsonl(tmp_path / "dir" / "part-0.jsonl", rows[:2])
    write_jsonl(tmp_path / "dir" / "part-1.jsonl", rows[2:5])
    (tmp_path / "e.data").write_text((tmp_path / "a.jsonl").read_text())
    from trainer.torch_free.training import DatasetSpec

    def n(**spec: Any) -> int:
        return len(load_spec(DatasetSpec(type="alpaca", **spec), "datasets[0]"))

    assert n(path=str(tmp_path / "a.jsonl")) == 3
    assert n(path=str(tmp_path / "b.json")) == 3
    assert n(path=str(tmp_path / "c.parquet")) == 6
    assert n(path=str(tmp_path / "d.csv")) == 6
    assert n(path=str(tmp_path / "dir")) == 5
    assert n(path=str(tmp_path / "dir"), data_files=["part-1.jsonl"]) == 3
    assert n(path=str(tmp_path / "e.data"), ds_type="jsonl") == 3
    assert n(path=str(tmp_path / "c.parquet"), shards=3) == 2


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    from trainer.torch_free.training import DatasetSpec

    write_jsonl(tmp_path / "sub" / "a.jsonl", _alpaca_rows(4))
    monkeypatch.chdir(tmp_path)
    assert len(load_spec(DatasetSpec(path="sub/a.jsonl", type="alpaca"), "datasets[0]")) == 4


def test_missing_local_file_names_the_entry_and_the_path(tiny_tokenizer, tiny_model_dir,
                                                        tmp_path):
    write_jsonl(tmp_path / "ok.jsonl", _alpaca_rows(3))
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataSourceError, match=r"datasets\[1\]\.path: .*nope\.jsonl.* not found"):
        _prep(tiny_tokenizer, tiny_model_dir,
              [{"path": str(tmp_path / "ok.jsonl"), "type": "alpaca"},
               {"path": str(missing), "type": "alpaca"}])


def test_hub_names_go_to_the_hub_loader(monkeypatch):
    """No hub is reachable here: the hub path is taken and fails with a clear message."""
    import datasets

    from trainer.torch_free.training import DatasetSpec

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    spec = DatasetSpec(path="ft-tests/no-such-dataset", name="cfg", split="train_sft")
    with pytest.raises(DataSourceError, match=r"datasets\[2\]\.path: cannot load "
                                              r"'ft-tests/no-such-dataset' from the Hugging "
                                              r"Face hub \(split 'train_sft'\)"):
        load_spec(spec, "datasets[2]")


def test_bad_rows_name_the_dataset(tiny_tokenizer, tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])
    with pytest.raises(DataSourceError, match=r"datasets\[0\].*alpaca row has no `instruction`"):
        _prep(tiny_tokenizer, tiny_model_dir,
              [{"path": str(tmp_path / "a.jsonl"), "type": "alpaca"}])


# --- mixing, splits, dropping ----------------------------------------------------------------

TINY_DATASETS = [{"path": str(TINY_DATA / "alpaca.jsonl"), "type": "alpaca"},
                 {"path": str(TINY_DATA / "chat.jsonl"), "type": "chat_template"}]


def test_datasets_are_mixed_and_split_deterministically(tiny_tokenizer, tiny_model_dir):
    prepared = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, chat_template="chatml",
                     val_set_size=0.1, seed=7)
    assert (len(prepared.train), len(prepared.eval)) == (180, 20)
    assert prepared.stats["samples"] == 180 and prepared.stats["eval_samples"] == 20
    assert [d["samples"] for d in prepared.stats["datasets"]] == [120, 80]
    first_50 = [tiny_tokenizer.decode(r["input_ids"][:8]) for r in prepared.train][:50]
    kinds = {"chat" if "<|im_start|>" in t else "alpaca" for t in first_50}
    assert kinds == {"chat", "alpaca"}, "the two datasets are shuffled together"
    again = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, chat_template="chatml",
                  val_set_size=0.1, seed=7)
    assert again.train["input_ids"] == prepared.train["input_ids"]
    assert again.eval["input_ids"] == prepared.eval["input_ids"]
    other = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, chat_template="chatml",
                  val_set_size=0.1, seed=8)
    assert other.train["input_ids"] != prepared.train["input_ids"]


def test_test_datasets_are_the_eval_set(tiny_tokenizer, tiny_model_dir, tmp_path):
    write_jsonl(tmp_path / "test.jsonl", _alpaca_rows(5))
    cfg = make_cfg(tiny_model_dir, TINY_DATASETS[:1], chat_template="chatml",
                   test_datasets=[{"path": str(tmp_path / "test.jsonl"), "type": "alpaca"}])
    prepared = prepare_data(cfg, tiny_tokenizer, show_progress=False)
    assert (len(prepared.train), len(prepared.eval)) == (120, 5)


def test_over_length_rows_are_dropped_and_counted(tiny_tokenizer, tiny_model_dir, tmp_path):
    rows = _alpaca_rows(6)
    rows[2]["output"] = rows[4]["output"] = "A long answer. " * 40
    write_jsonl(tmp_path / "a.jsonl", rows)
    prepared = _prep(tiny_tokenizer, tiny_model_dir,
                     [{"path": str(tmp_path / "a.jsonl"), "type": "alpaca"}], sequence_len=128)
    assert prepared.stats["dropped_overlength"] == 2
    assert prepared.stats["datasets"][0]["dropped_overlength"] == 2
    assert len(prepared.train) == 4
    assert all(len(ids) <= 128 for ids in prepared.train["input_ids"])


def test_rows_with_nothing_to_train_are_dropped_and_counted(tiny_tokenizer, tiny_model_dir,
                                                            tmp_path):
    rows = [{"segments": [{"text": "only a prompt", "label": False}]},
            {"segments": [{"text": "Q: ", "label": False}, {"text": "an answer", "label": True}]}]
    write_jsonl(tmp_path / "io.jsonl", rows)
    prepared = _prep(tiny_tokenizer, tiny_model_dir,
                     [{"path": str(tmp_path / "io.jsonl"), "type": "input_output"}])
    assert prepared.stats["dropped_untrained"] == 1 and len(prepared.train) == 1
    row = prepared.train[0]
    assert trained_runs(tiny_tokenizer, row["input_ids"], row["labels"]) == ["an answer"]


def test_completion_texts_are_chunked_not_dropped(tiny_tokenizer, tiny_model_dir, tmp_path):
    long = " ".join(["Waves roll onto the beach and pull the sand back out."] * 30)
    write_jsonl(tmp_path / "c.jsonl", [{"text": long}, {"text": "Short one."}])
    prepared = _prep(tiny_tokenizer, tiny_model_dir,
                     [{"path": str(tmp_path / "c.jsonl"), "type": "completion"}],
                     sequence_len=64)
    n_long, n_short = (len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) + 2
                       for t in (long, "Short one."))  # + BOS, EOS
    assert prepared.stats["dropped_overlength"] == 0
    assert len(prepared.train) == -(-n_long // 64) + 1
    assert prepared.stats["tokens"] == n_long + n_short
    assert all(len(ids) <= 64 for ids in prepared.train["input_ids"])


# --- packing through the pipeline, cache, describe --------------------------------------------

def test_packed_pipeline_rows_and_stats(tiny_tokenizer, tiny_model_dir):
    prepared = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, chat_template="chatml",
                     sample_packing=True, sequence_len=256, val_set_size=0.1)
    stats = prepared.stats
    assert set(prepared.train.column_names) == {"input_ids", "labels", "position_ids"}
    lengths = [len(ids) for ids in prepared.train["input_ids"]]
    assert max(lengths) <= 256
    assert sum(lengths) == stats["tokens"]
    assert stats["rows"] == len(prepared.train) < stats["samples"] == 180
    assert stats["packing_efficiency"] == pytest.approx(sum(lengths) / (len(lengths) * 256),
                                                        abs=1e-4)
    assert 0.8 < stats["packing_efficiency"] <= 1.0
    starts = sum(pos.count(0) for pos in prepared.train["position_ids"])
    assert starts == 180
    trained = sum(sum(1 for x in labs if x != -100) for labs in prepared.train["labels"])
    assert trained == stats["trained_tokens"] > 0
    assert "position_ids" in prepared.eval.column_names  # eval_sample_packing follows


def test_cache_hit_on_second_call_and_new_entry_when_sequence_len_changes(
        tiny_tokenizer, tiny_model_dir, tmp_path):
    fields = {"chat_template": "chatml", "sample_packing": True, "val_set_size": 0.1,
              "dataset_prepared_path": str(tmp_path / "prepared")}
    first = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, **fields)
    second = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS, **fields)
    assert (first.stats["cache"], second.stats["cache"]) == ("miss", "hit")
    assert first.stats["cache_path"] == second.stats["cache_path"]
    assert second.train["input_ids"] == first.train["input_ids"]
    assert second.eval["input_ids"] == first.eval["input_ids"]
    assert {k: v for k, v in second.stats.items() if k != "cache"} == \
        {k: v for k, v in first.stats.items() if k != "cache"}
    third = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS,
                  **{**fields, "sequence_len": 128})
    assert third.stats["cache"] == "miss"
    assert third.stats["cache_path"] != first.stats["cache_path"]
    entries = sorted(p.name for p in (tmp_path / "prepared").iterdir())
    assert len(entries) == 2 and not any(".tmp" in e for e in entries)


def test_cache_misses_when_a_data_file_changes(tiny_tokenizer, tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", _alpaca_rows(4))
    fields = {"dataset_prepared_path": str(tmp_path / "prepared")}
    ds = [{"path": str(data), "type": "alpaca"}]
    assert _prep(tiny_tokenizer, tiny_model_dir, ds, **fields).stats["cache"] == "miss"
    write_jsonl(data, _alpaca_rows(5))
    again = _prep(tiny_tokenizer, tiny_model_dir, ds, **fields)
    assert again.stats["cache"] == "miss" and len(again.train) == 5


def test_describe_rows_marks_masked_text_and_sample_starts(tiny_tokenizer, tiny_model_dir):
    prepared = _prep(tiny_tokenizer, tiny_model_dir, TINY_DATASETS[1:], chat_template="chatml",
                     sample_packing=True, eot_tokens=["<|im_end|>"])
    text = describe_rows(prepared.train, tiny_tokenizer, n=1)
    assert "\u27e6<|im_start|>" in text  # masked prompt inside ⟦ ⟧ (chatml: no BOS)
    assert "\u2016" in text  # a packed row holds several samples
    assert "assistant\n\u27e7" in text  # masking ends right before the answer
    trained = re.sub("\u27e6.*?\u27e7", "", text.split("\n", 2)[2], flags=re.S)
    assert "<|im_end|>" in trained and "<|im_start|>" not in trained


def test_the_shipped_tiny_example_prepares(tiny_tokenizer, tiny_model_dir, tmp_path,
                                           monkeypatch):
    spec = yaml.safe_load((REPO / "examples" / "tiny" / "tiny.yaml").read_text())
    spec.pop("launch")
    monkeypatch.chdir(REPO)  # its data paths are relative to the repo root
    from trainer.torch_free.training import TrainingConfig

    cfg = TrainingConfig(**{**spec, "base_model": str(tiny_model_dir),
                            "dataset_prepared_path": str(tmp_path / "prepared")})
    prepared = prepare_data(cfg, tiny_tokenizer, show_progress=False)
    assert prepared.stats["samples"] == 180 and prepared.stats["dropped_overlength"] == 0
    assert prepared.stats["packing_efficiency"] > 0.8


# --- the tiny model ---------------------------------------------------------------------------

def test_tiny_model_loads_through_auto_classes(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from trainer.models.tiny import build_tiny_model

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.num_key_value_heads) == (2, 64, 2)
    assert config.vocab_size == len(tok) and not config.tie_word_embeddings
    assert config.max_position_embeddings >= 1024
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}) == 4
    assert {"<|im_start|>", "<|im_end|>"} <= set(tok.all_special_tokens)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok("Snow.")["input_ids"][0] == tok.bos_token_id
    stamp = (tiny_model_dir / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(tiny_model_dir)  # idempotent: an existing build is kept
    assert (tiny_model_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_tiny_model_build_is_deterministic(tmp_path, tiny_model_dir):
    from trainer.models.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (other / name).read_bytes() == (tiny_model_dir / name).read_bytes()
