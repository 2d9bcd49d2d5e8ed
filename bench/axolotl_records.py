"""Axolotl's results from one device call -> bench records beside ft's, with ft / Axolotl.

The Axolotl kit (shared/bench/axolotl, carried as .axkit/) prints `AXBENCH_RESULT {json}`
per variant with the baseline's per-step timer; its own memory figure is not the training
peak, so the whole GPU's memory in use is polled with nvidia-smi during its runs
(ax_mem.txt, MiB per line) and its per-step losses are read from its log. Run here, on the
files a `bench/round3_call.sh` call brought back:

    python3 bench/axolotl_records.py CALL_DIR OUT.jsonl [--device "NVIDIA H200"]

CALL_DIR holds results.jsonl (ft, this tree), optionally main/results.jsonl (ft at main,
recorded as tool `ft@main`), ax_results.jsonl, ax_mem.txt and ax.log. Every record goes to
OUT.jsonl; ft records gain `ratio_vs_axolotl` (tokens/s over Axolotl's on the same case),
`loss_max_abs_vs` (largest per-step loss gap to each other ft run of the case) and
`gpu_gib_minus_axolotl`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

# kit variant -> bench case (same rows, seq 2048, mbs 4)
VARIANT_CASE = {"lora-real-liger-nockpt": "lora-realistic-8b",
                "qlora-real-liger-nockpt": "qlora-realistic-8b",
                "lora-fixed-liger-nockpt": "lora-fixed-8b",
                "qlora-fixed-liger-nockpt": "qlora-fixed-8b"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.exists() else []


def _losses(log: Path) -> dict[str, list[float]]:
    """Per-step losses of each variant in the kit's log (`[axbench] === VARIANT` headers)."""
    out: dict[str, list[float]] = {}
    current = None
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        head = re.search(r"\[axbench\] === (\S+)", line)
        if head:
            current = head.group(1)
            out[current] = []
        loss = re.search(r"'loss': '([0-9.]+)'", line)
        if loss and current:
            out[current].append(float(loss.group(1)))
    return out


def axolotl_records(call: Path, device: str | None) -> list[dict]:
    mem = [int(x) for x in (call / "ax_mem.txt").read_text().split()
           if x.isdigit()] if (call / "ax_mem.txt").exists() else []
    losses = _losses(call / "ax.log")
    records = []
    for r in _lines(call / "ax_results.jsonl"):
        variant = r.get("variant", "")
        records.append({
            "case": VARIANT_CASE.get(variant, variant), "tool": "axolotl+liger",
            "variant": variant, "device": device, "mbs": r.get("mbs"),
            "tokens_per_s": r.get("tokens_per_s"), "tokens_per_s_wall": r.get("tokens_per_s_wall"),
            # one poll over all the kit's variants: exact when the call ran one variant
            "peak_gpu_used_gib": round(max(mem) / 1024, 2) if mem else None,
            "loss": losses.get(variant, []),
            **{k: r[k] for k in ("error", "tokens_per_step", "measured_steps") if k in r}})
    return records


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("call", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default=None)
    a = ap.parse_args()
    ft = _lines(a.call / "results.jsonl")
    main_ft = [{**r, "tool": r["tool"].replace("ft", "ft@main", 1)}
               for r in _lines(a.call / "main" / "results.jsonl") if r.get("case")]
    ax = axolotl_records(a.call, a.device)
    rates = {r["case"]: r for r in ax if r.get("tokens_per_s")}
    runs = [r for r in ft + main_ft if r.get("case") and r.get("tokens_per_s")]
    for r in ft + main_ft:
        ref = rates.get(r.get("case"))
        if ref and r.get("tokens_per_s"):
            r["ratio_vs_axolotl"] = round(r["tokens_per_s"] / ref["tokens_per_s"], 3)
            if r.get("peak_gpu_used_gib") and ref.get("peak_gpu_used_gib"):
                r["gpu_gib_minus_axolotl"] = round(
                    r["peak_gpu_used_gib"] - ref["peak_gpu_used_gib"], 2)
        gaps = {o["tool"]: round(max(abs(x - y) for x, y in zip(r["loss"], o["loss"],
                                                                  strict=False)), 5)
                for o in runs if o is not r and o.get("case") == r.get("case")
                and r.get("loss") and o.get("loss") and o.get("mbs") == r.get("mbs")}
        if gaps:
            r["loss_max_abs_vs"] = gaps
    with a.out.open("w") as f:
        for r in ft + main_ft + ax:
            f.write(json.dumps(r) + "\n")
    for r in [*runs, *ax]:
        print(r.get("case"), r.get("tool"), r.get("mbs"), r.get("tokens_per_s"),
              r.get("peak_gpu_used_gib"), r.get("ratio_vs_axolotl", ""),
              r.get("loss_max_abs_vs", ""), r.get("error", ""))


if __name__ == "__main__":
    main()
