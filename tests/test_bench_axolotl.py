"""bench/'s `axolotl` tool without Axolotl installed (CI has none): the config it writes uses
only Axolotl 0.21's own keys with the case's geometry, the probe counts Axolotl's packed rows
as their real tokens, and an ft record's ratio to Axolotl follows from recorded runs. The run
itself is `bench/smoke_cpu.py --tools ft,axolotl+nolorak --check` (bench/README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import axolotl_tool  # noqa: E402
from probe import before_right_padding  # noqa: E402
from run_records import finish_case  # noqa: E402
from tool_names import parse_tool  # noqa: E402

KEYS = {x for x in (REPO / "tests/fixtures/axolotl/schema_keys.txt").read_text().splitlines()
        if x and not x.startswith(("#", "plugin "))}


@pytest.mark.parametrize("tool", ["axolotl", "axolotl+liger", "axolotl+ckpt+nolorak"])
@pytest.mark.parametrize("mode,packed", [("lora", False), ("qlora", True)])
def test_the_axolotl_config_uses_axolotl_keys_and_the_case_geometry(tmp_path, tool, mode,
                                                                      packed):
    mods = parse_tool(tool)[2]
    config = axolotl_tool.axolotl_config(
        mode=mode, packed=packed, model_dir="/tmp/rand-8b", data_path="/tmp/rows.jsonl",
        out_dir=tmp_path / "out", prepared_dir=tmp_path / "prep", seq=2048, mbs=4, steps=20,
        mods=mods)
    assert set(config) <= KEYS, set(config) - KEYS
    assert (config["micro_batch_size"], config["sequence_len"], config["max_steps"],
            config["gradient_accumulation_steps"]) == (4, 2048, 20, 1)
    assert config["datasets"] == [{"path": "/tmp/rows.jsonl", "ds_type": "json",
                                   "split": "train"}]
    assert config["sample_packing"] is packed and config["adapter"] == mode
    assert config.get("curriculum_sampling", False) is not packed  # full rows: file order
    assert config.get("load_in_4bit", False) is (mode == "qlora")
    assert config["logging_steps"] == 1
    assert config["bf16"] is True and config["optimizer"] == "adamw_torch"
    assert (config["learning_rate"], config["lr_scheduler"], config["seed"]) == (2e-4, "linear", 0)
    assert config["gradient_checkpointing"] is ("ckpt" in mods)
    assert ("plugins" in config) is ("liger" in mods)
    assert all(config.get(k) is False for k in axolotl_tool.LORA_KERNEL_KEYS) \
        is ("nolorak" in mods)


def test_only_ft_takes_an_attention_kernel_or_gpus():
    with pytest.raises(SystemExit, match="only ft"):
        parse_tool("axolotl@1x2+liger")
    with pytest.raises(SystemExit, match="unknown tool"):
        parse_tool("axolotl+cce")


def test_packed_rows_without_a_mask_count_the_tokens_before_right_padding():
    pad = 7
    ids = torch.tensor([[1, 2, pad, 3, pad, pad],    # a pad id with a real label is a token
                        [4, 5, 6, 8, 9, 1],
                        [pad] * 6])
    labels = ids.clone()
    labels[0, 4:] = -100
    labels[2, :] = -100
    assert before_right_padding(ids, labels, pad) == (4 + 6 + 0, "before_right_padding")
    assert before_right_padding(ids, labels, None) == (18, "all_tokens")


def test_ft_over_axolotl_follows_from_a_recorded_call():
    """The 2026-12-07 round-3 call 6 (H100): ft's and Axolotl's records of full LoRA rows;
    finish_case gives ft the ratio bench/results/README.md reports (1.042) whatever the
    order the two ran in."""
    lines = [json.loads(x) for x in
             (REPO / "bench/results/2026-12-07-h100-round3-call6.jsonl").read_text().splitlines()]
    case = [x for x in lines if x.get("case") == "lora-fixed-8b" and x.get("tokens_per_s")
            and x["tool"] in ("ft", "axolotl+liger")]
    for x in case:
        x.pop("ratio_vs_axolotl", None)
    ft, ax = sorted(case, key=lambda x: x["tool"] != "ft")
    for order in ([ft, ax], [ax, ft]):
        done = finish_case(order, "lora-fixed-8b")
        assert done == [ft]
        ratio = ft["ratio_vs_axolotl"]
        assert ratio["tool"] == "axolotl+liger"
        assert ratio["tokens_per_s"] == round(13997.6 / 13435, 3) == 1.042
        assert ratio["gpu_gib_minus_axolotl"] == round(45.48 - 44.91, 2)
