"""CPU smoke test of the harness (no GPU): tiny Llama shape, short sequences, few steps.

    /work/venv/bin/python bench/smoke_cpu.py [--out /tmp/ftbench-smoke/out]

The baseline script is written for CUDA; this test runs a copy with the CUDA calls
replaced by CPU ones and a `tiny` entry added to SHAPES. Everything else (tokenizer and model
preparation, data files, ft spec, ft train, the probe, the JSON lines and ratios) is the
code the GPU run uses.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/ftbench-smoke")
    ap.add_argument("--out", default="/tmp/ftbench-smoke/out")
    ap.add_argument("--cases", default="lora-fixed,lora-realistic")
    ap.add_argument("--tools", default="baseline,ft")
    a = ap.parse_args()
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
           "--steps", "6", "--warm", "2", "--rows", "300", "--peak-tflops", "1.0",
           "--budget-s", "900",
           "--min-run-s", "10", "--baseline", str(cpu_baseline)]
    sys.exit(subprocess.call(cmd))


if __name__ == "__main__":
    main()
