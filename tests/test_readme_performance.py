"""Every figure in docs/performance.md (and the sharded save's in docs/sharded-training.md) is
computed here from the JSON lines
committed under bench/results/ (one run each, on the GPU machine): a figure that no longer
follows from a recorded run fails this test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"

# (the page's text with {} for the figure, digits, results file, case, tool, reference tool):
# the figure is tool's tokens/s over the reference's; a reference in another file is
# written "file:tool".
CLAIMS = [
    ("defaults give {}x the baseline's useful tokens/s on full-length rows", 1,
     "2026-11-26-h100-call6.jsonl", "lora-fixed-8b", "ft", "baseline"),
    ("(LoRA; QLoRA {}x)", 2, "2026-11-26-2xh100-call13.jsonl", "qlora-fixed-8b", "ft",
     "baseline"),
    ("{}x transformers with its own Liger flag", 1, "2026-11-26-h100-call3.jsonl",
     "lora-fixed-8b", "ft", "2026-11-26-h100-call1.jsonl:baseline+liger+nockpt"),
    ("and {}x on realistic", 1, "2026-11-26-h100-call6.jsonl", "lora-realistic-8b", "ft",
     "baseline"),
    ("QLoRA {}x), with losses", 2, "2026-11-26-2xh100-call13.jsonl", "qlora-realistic-8b",
     "ft", "baseline"),
    ("FSDP2 LoRA runs at {}x", 2, "2026-11-26-2xh200-call12.jsonl", "lora-fixed-8b",
     "ft@1x2", "ft"),
    ("({}x with the base sharded)", 2, "2026-11-26-2xh200-call12.jsonl", "lora-fixed-8b",
     "ft@1x2+shard", "ft"),
    ("QLoRA at {}x", 2, "2026-11-26-2xh200-call12.jsonl", "qlora-fixed-8b", "ft@1x2", "ft"),
    ("({}x sharded)", 2, "2026-11-26-2xh200-call12.jsonl", "qlora-fixed-8b", "ft@1x2+shard",
     "ft"),
    ("DDP LoRA {}x", 2, "2026-11-26-2xh200-call10.jsonl", "lora-fixed-8b", "ft@1x2+ddp", "ft"),
    ("one node of two ({}x)", 2, "2026-11-26-2xh200-call9.jsonl", "lora-fixed-8b", "ft@2x1",
     "ft@1x2"),
    ("runs at {}x Axolotl's useful tokens/s on packed LoRA rows", 2,
     "2026-12-07-h100-round3-call4.jsonl", "lora-realistic-8b", "ft", "axolotl+liger"),
    ("{}x on packed QLoRA rows", 2, "2026-12-07-h100-round3-call5.jsonl", "qlora-realistic-8b",
     "ft", "axolotl+liger"),
    ("{}x on full LoRA rows", 2, "2026-12-07-h100-round3-call6.jsonl", "lora-fixed-8b", "ft",
     "axolotl+liger"),
    ("{}x on full QLoRA rows", 2, "2026-12-07-h100-round3-call7.jsonl", "qlora-fixed-8b", "ft",
     "axolotl+liger"),
    ("{}x ft's previous default on packed LoRA rows", 2, "2026-12-07-h100-round3-call6.jsonl",
     "lora-realistic-8b", "ft", "ft@main"),
]
# (the page's text with {} for the GPU memory in use, GiB, that tool uses beyond the
# reference's on that case, both in one results file): ft against Axolotl, and main's ft
# against this tree's (memory saved).
MEMORY_CLAIMS = [
    ("packed LoRA rows (+{} GiB", "2026-12-07-h100-round3-call4.jsonl", "lora-realistic-8b",
     "ft", "axolotl+liger"),
    ("packed QLoRA rows (+{} GiB", "2026-12-07-h100-round3-call5.jsonl", "qlora-realistic-8b",
     "ft", "axolotl+liger"),
    ("full LoRA rows (+{} GiB", "2026-12-07-h100-round3-call6.jsonl", "lora-fixed-8b", "ft",
     "axolotl+liger"),
    ("full QLoRA rows (+{} GiB", "2026-12-07-h100-round3-call7.jsonl", "qlora-fixed-8b", "ft",
     "axolotl+liger"),
    ("with {} GiB less GPU memory", "2026-12-07-h100-round3-call6.jsonl", "lora-realistic-8b",
     "ft@main", "ft"),
]


def _recorded(file: str, case: str, tool: str, key: str = "tokens_per_s") -> float:
    """`key` of the first record of `case` and `tool` in bench/results/`file` that has one."""
    for line in (RESULTS / file).read_text().splitlines():
        record = json.loads(line)
        if record.get("case") == case and record.get("tool") == tool and record.get(key):
            return record[key]
    raise AssertionError(f"no measured {key} of {case} {tool} in bench/results/{file}")


def _performance_section() -> str:
    page = (REPO / "docs" / "performance.md").read_text()
    return " ".join(page[:page.index("\n## Protocol")].split())


@pytest.mark.parametrize("text, digits, file, case, tool, reference", CLAIMS)
def test_each_readme_figure_follows_from_a_recorded_run(text, digits, file, case, tool,
                                                        reference):
    ref_file, _, ref_tool = reference.rpartition(":")
    ratio = _recorded(file, case, tool) / _recorded(ref_file or file, case, ref_tool)
    claim = text.format(f"{ratio:.{digits}f}")
    assert claim in _performance_section(), (claim, ratio)


@pytest.mark.parametrize("text, file, case, tool, reference", MEMORY_CLAIMS)
def test_each_memory_figure_follows_from_a_recorded_run(text, file, case, tool, reference):
    more = (_recorded(file, case, tool, "peak_gpu_used_gib")
            - _recorded(file, case, reference, "peak_gpu_used_gib"))
    claim = text.format(f"{more:.1f}")
    assert claim in _performance_section(), (claim, more)


SAVE_RESULTS = "2026-11-26-2xh200-call15-save.jsonl"


def test_the_sharded_save_figures_follow_from_the_recorded_save_bench():
    """docs/sharded-training.md: the 8B save of ft's export against the old gather."""
    runs = {r["tool"]: r for r in map(json.loads,
                                      (RESULTS / SAVE_RESULTS).read_text().splitlines())}
    new, old = runs["save-export"], runs["save-gather"]
    assert new["dtype"] == "BF16" and old["dtype"] == "F32"
    claim = (f"8B on 2 H200s: {new['seconds']:.0f} s and +{new['rank0_rss_growth_gib']:.1f} "
             f"GiB of host memory, against {old['seconds']:.0f} s and "
             f"+{old['rank0_rss_growth_gib']:.1f} GiB for the fp32 whole-model gather")
    page = " ".join((REPO / "docs" / "sharded-training.md").read_text().split())
    assert claim in page, claim
