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
    ("ft runs at {}x Axolotl's useful tokens/s on full LoRA rows", 3,
     "2026-12-07-h100-perf22-call3.jsonl", "lora-fixed-8b", "ft", "axolotl+liger"),
    ("and {}x on full QLoRA rows (+", 3, "2026-12-07-h100-perf22-call3.jsonl",
     "qlora-fixed-8b", "ft", "axolotl+liger"),
    ("and {}x the baseline on full LoRA rows", 2, "2026-12-07-h100-perf22-call3.jsonl",
     "lora-fixed-8b", "ft", "baseline"),
    ("{}x ft's previous default on full LoRA rows", 3, "2026-12-07-h100-perf22-call2.jsonl",
     "lora-fixed-8b", "ft", "ft@main"),
    ("and {}x on full QLoRA rows in one call", 3, "2026-12-07-h100-perf22-call2.jsonl",
     "qlora-fixed-8b", "ft", "ft@main"),
    ("{}x on LoRA (+0.8 GiB)", 2, "2026-12-07-h100-round3-call4.jsonl", "lora-realistic-8b",
     "ft", "axolotl+liger"),
    ("{}x on QLoRA (+0.7 GiB)", 2, "2026-12-07-h100-round3-call5.jsonl", "qlora-realistic-8b",
     "ft", "axolotl+liger"),
    ("{}x ft's previous default on packed LoRA rows", 2, "2026-12-07-h100-round3-call6.jsonl",
     "lora-realistic-8b", "ft", "ft@main"),
]
# (the page's text with {} for the GPU memory in use, GiB, that tool uses beyond the
# reference's on that case, both in one results file): ft against Axolotl, and main's ft
# against this tree's (memory saved).
MEMORY_CLAIMS = [
    ("on LoRA (+{} GiB)", "2026-12-07-h100-round3-call4.jsonl", "lora-realistic-8b",
     "ft", "axolotl+liger"),
    ("on QLoRA (+{} GiB)", "2026-12-07-h100-round3-call5.jsonl", "qlora-realistic-8b",
     "ft", "axolotl+liger"),
    ("full LoRA rows (+{} GiB", "2026-12-07-h100-perf22-call3.jsonl", "lora-fixed-8b", "ft",
     "axolotl+liger"),
    ("full QLoRA rows (+{} GiB", "2026-12-07-h100-perf22-call3.jsonl", "qlora-fixed-8b", "ft",
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


def test_the_loss_guard_and_allocator_figures_follow_from_the_recorded_runs():
    """Same rows, same order: the per-step loss gaps of the three tools over all 20 steps,
    and the QLoRA run with expandable segments against the one without, on one machine."""
    page = _performance_section()
    call3 = [json.loads(line) for line in
             (RESULTS / "2026-12-07-h100-perf22-call3.jsonl").read_text().splitlines()]
    ft = next(r for r in call3 if r.get("tool") == "ft" and r.get("case") == "lora-fixed-8b")
    assert len(ft["loss"]) == 20
    assert f"within {ft['loss_vs']['axolotl+liger']['max']:.4f} of Axolotl's" in page
    assert f"and {ft['loss_vs']['baseline']['max']:.4f} of the baseline's" in page
    before = _recorded("2026-12-07-h100-perf22-call3.jsonl", "qlora-fixed-8b", "ft",
                       "peak_gpu_used_gib")
    after = _recorded("2026-12-07-h100-perf22-call4.jsonl", "qlora-fixed-8b", "ft",
                      "peak_gpu_used_gib")
    axolotl = _recorded("2026-12-07-h100-perf22-call3.jsonl", "qlora-fixed-8b",
                        "axolotl+liger", "peak_gpu_used_gib")
    assert (f"held {after:.1f} GiB of GPU memory instead of {before:.1f} at the same speed, "
            f"under Axolotl's {axolotl:.1f}") in page
    mfu = _recorded("2026-12-07-h100-perf22-call3.jsonl", "lora-fixed-8b", "ft", "mfu")
    assert f"LoRA on full rows reaches {mfu:.2f} of the measured bf16 matmul peak" in page


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


PROFILE = "2026-12-07-h100-perf22-call1-profile.txt"


def _profile_ms(*names: str) -> float:
    """Self CUDA milliseconds of the kernel table's rows named (or, for a name ending in
    '*', starting with) one of `names`."""
    import re

    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    table = (RESULTS / PROFILE).read_text().split("Self CPU time total")[0]
    total = 0.0
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) < 10 or not any(cells[0] == n or (n.endswith("*") and
                                                        cells[0].startswith(n[:-1]))
                                      for n in names):
            continue
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", cells[6]).groups()
        total += float(value) * units[unit]
    return total


def test_the_step_time_figures_follow_from_the_recorded_profile():
    text = (RESULTS / PROFILE).read_text()
    steps = 3
    import re

    span, busy = (float(x) for x in re.search(r"GPU kernel span ([\d.]+) ms, busy ([\d.]+) ms",
                                              text).groups())
    per_step = {
        "matrix multiplications": _profile_ms("aten::mm", "aten::addmm"),
        "attention": _profile_ms("aten::_cudnn_attention_backward",
                                 "aten::_cudnn_attention_forward"),
        "SwiGLU": _profile_ms("_swiglu_forward_kernel", "_swiglu_backward_kernel"),
        "elementwise sums": _profile_ms("aten::add", "aten::add_"),
        "device copies": _profile_ms("Memcpy DtoD*"),
        "RMSNorm": _profile_ms("_rms_norm_forward_kernel", "_rms_norm_backward_kernel"),
        "the optimizer": _profile_ms("Optimizer.step#AdamW.step"),
        "idle": span - busy,
    }
    page = " ".join((REPO / "docs" / "performance.md").read_text().split())
    for words, pattern in (("matrix multiplications", "matrix multiplications {} ms"),
                           ("attention", "attention {} ms"), ("SwiGLU", "SwiGLU {} ms"),
                           ("elementwise sums", "elementwise sums {} ms"),
                           ("device copies", "device copies {} ms"), ("RMSNorm", "RMSNorm {} ms"),
                           ("the optimizer", "the optimizer {} ms"),
                           ("idle", "the GPU idle {} ms")):
        claim = pattern.format(round(per_step[words] / steps))
        assert claim in page, (claim, per_step[words] / steps)


# The README's speed table: (row label, results file, case), each row's ft, Axolotl and
# (where it ran) baseline from that one file. FT_UPDATE_README_TABLE=1 rewrites the table.
TABLE_ROWS = [
    ("LoRA, full rows", "2026-12-07-h100-perf22-call3.jsonl", "lora-fixed-8b"),
    ("QLoRA, full rows", "2026-12-07-h100-perf22-call3.jsonl", "qlora-fixed-8b"),
    ("LoRA, realistic lengths, packed", "2026-12-07-h100-round3-call4.jsonl",
     "lora-realistic-8b"),
    ("QLoRA, realistic lengths, packed", "2026-12-07-h100-round3-call5.jsonl",
     "qlora-realistic-8b"),
]


def _optional(file: str, case: str, tool: str, key: str = "tokens_per_s") -> float | None:
    try:
        return _recorded(file, case, tool, key)
    except AssertionError:
        return None


def speed_table() -> str:
    lines = ["| case | ft | Axolotl 0.21 | ft / Axolotl | GPU GiB, ft / Axolotl | "
             "transformers + peft | ft / it | results |", "|---|---|---|---|---|---|---|---|"]
    for label, file, case in TABLE_ROWS:
        ft, ax = _recorded(file, case, "ft"), _recorded(file, case, "axolotl+liger")
        mem = (f"{_recorded(file, case, 'ft', 'peak_gpu_used_gib'):.1f} / "
               f"{_recorded(file, case, 'axolotl+liger', 'peak_gpu_used_gib'):.1f}")
        base = _optional(file, case, "baseline")
        base_cells = f"{base:,.0f} | {ft / base:.2f}x" if base else "not in this call | "
        lines.append(f"| {label} | {ft:,.0f} | {ax:,.0f} | {ft / ax:.3f}x | {mem} | "
                     f"{base_cells} | [{file[:-6]}](bench/results/{file}) |")
    return "\n".join(lines)


def test_the_readme_speed_table_is_the_recorded_runs():
    import os
    import re

    readme = REPO / "README.md"
    text = readme.read_text()
    block = re.compile(r"(<!-- perf:start -->\n).*?(<!-- perf:end -->)", re.S)
    wanted = block.sub(lambda m: m.group(1) + speed_table() + "\n" + m.group(2), text)
    if os.environ.get("FT_UPDATE_README_TABLE") == "1":
        readme.write_text(wanted)
    assert text == wanted, "README speed table differs; FT_UPDATE_README_TABLE=1 rewrites it"
