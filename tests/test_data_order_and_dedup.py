"""The data-side Axolotl keys through ft's real pipeline (trainer/data/pipeline.py) on the
tiny tokenizer: `dataset_exact_deduplication`, `curriculum_sampling` (file order through
encoding, packing, the Trainer's sampler and two ranks' shards), `shuffle_merged_datasets`,
`shuffle_before_merging_datasets`, `dataset_shard_num` / `dataset_shard_idx`, and split
slicing of local files."""

from __future__ import annotations

import re

import pytest

from orchestrator.spec.load import parse_spec
from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.fixtures_tiny import make_cfg, write_jsonl
from tests.train_helpers import TINY_DATA, summary
from trainer.data.describe import summary_text
from trainer.data.pipeline import prepare_data
from trainer.torch_free.errors import SpecError

ROW = re.compile(r"Row (\d+)\b")


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"instruction": f"Row {i}: say hello.", "input": "", "output": f"Hello {i}."}
            for i in range(start, start + n)]


def _data(tmp_path, name: str, rows: list[dict]) -> dict:
    return {"path": str(write_jsonl(tmp_path / name, rows)), "type": "alpaca"}


def _numbers(ds, tokenizer) -> list[list[int]]:
    """Per training row, the `Row i` numbers it holds, in order (several when packed)."""
    return [[int(m) for m in ROW.findall(tokenizer.decode(ids))] for ids in ds["input_ids"]]


def _flat(numbers: list[list[int]]) -> list[int]:
    return [n for row in numbers for n in row]


def test_exact_duplicates_go_before_the_val_split_and_within_test_datasets(
        tmp_path, tiny_model_dir, tiny_tokenizer):
    rows = _rows(20) + _rows(5)  # rows 0-4 twice
    cfg = make_cfg(tiny_model_dir, [_data(tmp_path, "dup.jsonl", rows)], val_set_size=0.2,
                   dataset_exact_deduplication=True)
    data = prepare_data(cfg, tiny_tokenizer, show_progress=False)
    assert data.stats["dropped_duplicates"] == 5 and data.stats["samples"] == 16
    train, held = _flat(_numbers(data.train, tiny_tokenizer)), _flat(_numbers(data.eval,
                                                                              tiny_tokenizer))
    assert sorted(train + held) == list(range(20))  # each row once, in one of the two
    plain = make_cfg(tiny_model_dir, [_data(tmp_path, "dup.jsonl", rows)], val_set_size=0.2)
    assert "dropped_duplicates: 5\n" in summary_text(data.stats)
    kept = prepare_data(plain, tiny_tokenizer, show_progress=False).stats
    assert kept["samples"] == 20 and "dropped_duplicates" not in summary_text(kept)
    tested = make_cfg(tiny_model_dir, [_data(tmp_path, "a.jsonl", _rows(6))],
                      test_datasets=[_data(tmp_path, "t.jsonl", _rows(3) * 2)],
                      dataset_exact_deduplication=True)
    eval_rows = prepare_data(tested, tiny_tokenizer, show_progress=False).eval
    assert sorted(_flat(_numbers(eval_rows, tiny_tokenizer))) == [0, 1, 2]


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_curriculum_keeps_file_order_through_packing_sampler_and_ranks(
        packing, tmp_path, tiny_model_dir, tiny_tokenizer):
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    cfg = make_cfg(tiny_model_dir, [_data(tmp_path, "rows.jsonl", _rows(24))],
                   curriculum_sampling=True, sample_packing=packing, sequence_len=256,
                   micro_batch_size=2, output_dir=str(tmp_path / "out"))
    data = prepare_data(cfg, tiny_tokenizer, show_progress=False)
    numbers = _numbers(data.train, tiny_tokenizer)
    assert _flat(numbers) == list(range(24))
    assert (max(len(n) for n in numbers) > 1) == packing
    trainer = _trainer(cfg, data.train, tiny_tokenizer)
    seen = [n for batch in trainer.get_train_dataloader()
            for n in _flat(_numbers({"input_ids": batch["input_ids"].tolist()},
                                    tiny_tokenizer))]
    assert seen == list(range(24))
    # Two ranks: accelerate deals the sequential batches out in turn (what the Trainer's
    # accelerator does on a multi-GPU run), so each rank's rows stay in file order too.
    loader = DataLoader(data.train, batch_size=2, sampler=trainer._get_train_sampler(),
                        collate_fn=trainer.data_collator)
    per_rank = [[_flat(_numbers({"input_ids": b["input_ids"].tolist()}, tiny_tokenizer))
                 for b in prepare_data_loader(loader, num_processes=2, process_index=rank,
                                              put_on_device=False)] for rank in (0, 1)]
    dealt = [n for pair in zip(*per_rank, strict=True) for batch in pair for n in batch]
    assert dealt[:24] == list(range(24))
    assert all(_flat(batches) == sorted(_flat(batches)) for batches in per_rank)


def _trainer(cfg, train, tokenizer):
    import torch

    from trainer.data.collate import make_collator
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import FtTrainer, build_training_args
    from trainer.models.load import choose_precision

    args = build_training_args(cfg, choose_precision(cfg), train_rows=len(train),
                               world=WorldRanks(), has_eval=False, plan=None)
    return FtTrainer(model=torch.nn.Linear(2, 2), args=args, train_dataset=train,
                     data_collator=make_collator(cfg, tokenizer, attn_implementation="sdpa"))


def test_curriculum_over_several_shuffled_datasets_is_warned():
    import warnings

    from orchestrator.spec.load import SpecWarning

    text = ("base_model: org/model\ncurriculum_sampling: true\ndatasets:\n"
            "  - path: a.jsonl\n    type: alpaca\n  - path: b.jsonl\n    type: alpaca\n")
    for extra, warned in (("", True), ("shuffle_merged_datasets: false\n", False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpecWarning)
            parse_spec(text + extra, "spec.yaml")
        assert any("`curriculum_sampling` with several datasets" in str(w.message)
                   for w in caught) == warned


def test_merge_order_keys_and_one_shard(tmp_path, tiny_model_dir, tiny_tokenizer):
    first, second = _data(tmp_path, "a.jsonl", _rows(10)), _data(tmp_path, "b.jsonl",
                                                                 _rows(10, start=10))

    def order(**fields):
        cfg = make_cfg(tiny_model_dir, [first, second], **fields)
        return _flat(_numbers(prepare_data(cfg, tiny_tokenizer, show_progress=False).train,
                              tiny_tokenizer))

    assert order(shuffle_merged_datasets=False) == list(range(20))
    mixed = order()  # the default: merged rows shuffled together
    assert sorted(mixed) == list(range(20)) and mixed[:10] != list(range(10))
    apart = order(shuffle_merged_datasets=False, shuffle_before_merging_datasets=True)
    assert sorted(apart[:10]) == list(range(10)) and apart[:10] != list(range(10))
    assert sorted(apart[10:]) == list(range(10, 20))
    shard = order(shuffle_merged_datasets=False, dataset_shard_num=4, dataset_shard_idx=1)
    assert shard == list(range(5, 10))  # the second of four contiguous shards


@pytest.mark.parametrize(("split", "rows"), [
    ("train", 120), ("train[:20%]", 24), ("train[10:100]", 90), ("train[-10%:]", 12),
    ("train[:10]+train[-5:]", 15)])
def test_a_local_files_split_slice_counts_its_rows(split, rows):
    from trainer.data.loading import load_spec
    from trainer.torch_free.training import DatasetSpec

    spec = DatasetSpec(path=str(TINY_DATA / "alpaca.jsonl"), type="alpaca", split=split)
    assert len(load_spec(spec, "datasets[0]")) == rows


def test_a_datasets_saved_to_disk_is_sliced_the_same_way(tmp_path):
    import datasets

    from trainer.data.loading import load_spec
    from trainer.torch_free.training import DatasetSpec

    rows = datasets.load_dataset("json", data_files=str(TINY_DATA / "alpaca.jsonl"),
                                 split="train")
    datasets.DatasetDict({"train": rows, "test": rows.select(range(10))}).save_to_disk(
        str(tmp_path / "saved"))
    for split, count in (("train[:20%]", 24), ("train[-10%:]", 12), ("train[:5]+test", 15)):
        spec = DatasetSpec(path=str(tmp_path / "saved"), type="alpaca", split=split)
        assert len(load_spec(spec, "datasets[0]")) == count


@pytest.mark.parametrize(("split", "says"), [
    ("train[:20", "is not a split"), ("train[10%:50]", "mixes percent and row bounds"),
    ("train[:150%]", "between -100% and 100%"), ("train[:10]+test[:5]", "a local file is one"),
    ("train[:10](closest)", "after a percent slice only")])
def test_a_bad_split_is_an_error_at_validate_time_naming_the_dataset(split, says):
    text = ("base_model: org/model\ndatasets:\n  - path: a.jsonl\n    type: alpaca\n"
            f"  - path: b.jsonl\n    type: alpaca\n    split: '{split}'\n")
    with pytest.raises(SpecError) as info:
        parse_spec(text, "spec.yaml")
    [problem] = info.value.problems
    assert "datasets[1].split" in str(info.value) and says in problem.message


def test_dedup_curriculum_corpus_config_trains(tmp_path, tiny_model_dir):
    spec = tiny_corpus_copy("dedup-curriculum.yml", tmp_path, tiny_model_dir, max_steps=3)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    facts = summary(tmp_path / "out")
    lines = (TINY_DATA / "alpaca.jsonl").read_text().splitlines()
    unique = len(set(lines))
    assert facts["global_step"] == 3
    assert facts["data"]["dropped_duplicates"] == 2 * len(lines) - unique
    assert facts["data"]["samples"] == (unique + 1) // 2  # shard 0 of 2 (the larger half)


def test_split_slicing_corpus_config_trains_and_evaluates_on_its_slices(tmp_path,
                                                                         tiny_model_dir):
    spec = tiny_corpus_copy("split-slicing.yml", tmp_path, tiny_model_dir, max_steps=3)
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    facts = summary(tmp_path / "out")
    assert facts["data"]["datasets"][0]["rows_in"] == 96 and facts["data"]["eval_samples"] == 10
    assert any("eval_loss" in entry for entry in facts["log_history"])
