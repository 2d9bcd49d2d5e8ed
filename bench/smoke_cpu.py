"""CPU smoke test of the harness (no GPU): tiny Llama shape, short sequences, few steps.

    /work/venv/bin/python bench/smoke_cpu.py [--out /tmp/ftbench-smoke/out]
    ... bench/smoke_cpu.py --tools ft,axolotl+nolorak --axolotl-site DIR --check

The baseline script is written for CUDA; this test runs a copy with the CUDA calls
replaced by CPU ones and a `tiny` entry added to SHAPES. Everything else (tokenizer and model
preparation, data files, ft spec, ft train, the probe, the JSON lines and ratios) is the
code the GPU run uses. Axolotl runs on a CPU only with `+nolorak` (its Triton LoRA kernels
need CUDA); DIR holds its wheels (`pip install --no-deps --target DIR`, see
bench/axolotl_tool.py). `--check` asserts every case's records: each tool measured every
step with a per-step loss, on the same micro-batch geometry, and each ft record has its loss
gaps and ratio to every other tool of the case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SUBSTITUTIONS = [
    ('VOCAB = 128256\n', 'VOCAB = 128256\nSHAPES["tiny"] = dict(hidden_size=64, '
     'intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, '
     'num_key_value_heads=2)\n'),
    ('torch.device("cuda")', 'torch.device("cpu")'),
    ("torch.cuda.synchronize()", "None"),
    ("torch.cuda.reset_peak_memory_stats()", "None"),
    ("torch.cuda.max_memory_allocated()", "0"),
    ("torch.cuda.empty_cache()", "None"),
    ("bf16=True,", "bf16=False, use_cpu=True,"),
]


def check(results: Path, cases: list[str], tools: list[str], steps: int) -> None:
    """The records of one smoke invocation, case by case (see the module's docstring)."""
    records = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
    for case in cases:
        runs = {r["tool"]: r for r in records if r.get("case") == f"{case}-tiny"}
        assert sorted(runs) == sorted(tools), (case, sorted(runs))
        for tool, r in runs.items():
            assert r.get("tokens_per_s") and r.get("error") is None, (case, tool, r)
        for tool, r in runs.items():
            assert len(r["loss"]) == steps and all(x > 0 for x in r["loss"]), (case, tool)
            others = set(runs) - {tool}
            assert set(r["loss_vs"]) == others, (case, tool, r["loss_vs"])
            assert all(g["steps"] == steps for g in r["loss_vs"].values()), (case, tool)
        geometry = {(r["mbs"], r["seq"], r["batch_tokens_per_step"]) for r in runs.values()
                    if not r["tool"].startswith("baseline")}
        assert len(geometry) == 1, (case, geometry)
        if case.endswith("fixed"):  # the same full-length rows: no padding anywhere
            assert {r["padding_frac"] for r in runs.values()} == {0.0}, case
        ax = [t for t in tools if t.startswith("axolotl")]
        for tool in tools:
            if tool.startswith("ft") and ax:
                ratio = runs[tool]["ratio_vs_axolotl"]
                assert ratio["tool"] in ax and ratio["tokens_per_s"] > 0, (case, tool, ratio)
        print(f"smoke check {case}: " + ", ".join(
            f"{t} {r['tokens_per_s']} tok/s, loss {r['loss'][0]}..{r['loss'][-1]}"
            for t, r in runs.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ftbench-smoke")
    ap.add_argument("--out", default="/tmp/ftbench-smoke/out")
    ap.add_argument("--cases", default="lora-fixed,lora-realistic")
    ap.add_argument("--tools", default="baseline,ft")
    ap.add_argument("--axolotl-site", default="/tmp/axsite")
    ap.add_argument("--check", action="store_true", help="assert the records (see above)")
    a = ap.parse_args()
    steps = 6
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(BENCH))
    from run_bench import BASELINE  # the same lookup the harness uses

    text = BASELINE.read_text()
    for old, new in SUBSTITUTIONS:
        if old not in text:
            raise SystemExit(f"baseline changed: {old!r} not found")
        text = text.replace(old, new)
    cpu_baseline = work / "baseline_cpu.py"
    cpu_baseline.write_text(text)
    cmd = [sys.executable, str(BENCH / "run_bench.py"), "--out", a.out, "--work", a.work,
           "--cases", a.cases, "--tools", a.tools, "--shape", "tiny", "--seq", "128",
           "--steps", str(steps), "--warm", "2", "--rows", "300", "--peak-tflops", "1.0",
           "--budget-s", "900",
           "--min-run-s", "10", "--baseline", str(cpu_baseline),
           "--axolotl-site", a.axolotl_site]
    results = Path(a.out) / "results.jsonl"
    if a.check:
        results.unlink(missing_ok=True)  # only this invocation's records are checked
    rc = subprocess.call(cmd)
    if rc or not a.check:
        sys.exit(rc)
    check(results, [c for c in a.cases.split(",") if c], [t for t in a.tools.split(",") if t],
          steps)


if __name__ == "__main__":
    main()
