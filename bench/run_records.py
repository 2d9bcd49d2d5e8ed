"""What turns a finished run into its JSON record, and the table printed at the end.

Rates come from the probe's file (bench/probe.py): useful (non-padding) tokens/s per GPU
over the steps after the first `--warm`, on the step basis (CUDA-synchronised step times)
and the wall basis (host clock between step ends). The rest of a record compares the run
with the earlier runs of its case: loss gaps, ratios to the baseline, multi-GPU scaling; when
the case ends, `finish_case` adds what needs every run of it (ft / Axolotl, loss gaps to
the runs that came later).

FLOPs per useful token: N = parameters of the base model (8.03e9 for 8b); HFU counts 6N
(forward 2N, activation gradients 2N, activation-checkpoint recompute 2N), MFU 4N (no
recompute). LoRA weight gradients and attention score FLOPs are left out (a few % at 2048).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import axolotl_tool
from tool_names import single_gpu_tool


def figures(p: dict, warm: int, world: int = 1) -> dict:
    """Rates per GPU (a multi-GPU record sums every rank's tokens)."""
    steps = len(p["step_s"])
    if p.get("gradient_accumulation_steps", 1) != 1:
        raise SystemExit("the probe assumes gradient_accumulation_steps 1")
    warm = min(warm, max(steps - 2, 0))
    useful = p["useful"][:steps]
    timed = sum(useful[warm:])
    step_time = sum(p["step_s"][warm:])
    begin = p["step_end_t"][warm - 1] if warm else p["train_begin_s"]
    wall = p["step_end_t"][-1] - begin
    batch = sum(p["batch_tokens"][warm:steps])
    return {"timed_steps": steps - warm,
            "tokens_per_s": round(timed / step_time / world, 1) if step_time else None,
            "tokens_per_s_wall": round(timed / wall / world, 1) if wall else None,
            **({"tokens_per_s_all_gpus": round(timed / step_time, 1)}
               if world > 1 and step_time else {}),
            "useful_tokens_per_step": round(timed / max(steps - warm, 1), 1),
            "batch_tokens_per_step": round(batch / max(steps - warm, 1), 1),
            "padding_frac": round(1 - timed / batch, 4) if batch else None,
            "step_s_median": round(sorted(p["step_s"][warm:])[(steps - warm) // 2], 4),
            "first_step_s": round(p["step_s"][0], 2) if steps else None}


def probe_fields(p: dict, warm: int, world: int, per_rank: bool) -> dict:
    """The probe's figures, setup time and the training process's peak memory."""
    out = figures(p, warm, world)
    if per_rank:
        out["per_rank_peak_alloc_gib"] = [_r(x, 2) for x in p["per_rank_peak_alloc_gib"]]
    out["useful_source"] = p.get("useful_source")
    out["setup_s"] = round(p.get("train_begin_s", 0), 1)
    out["peak_alloc_gib"] = _r(p.get("peak_alloc_gib"), 2)
    out["peak_reserved_gib"] = _r(p.get("peak_reserved_gib"), 2)
    return out


def ft_choices(lines: list[str], kind: str, mods: set[str]) -> dict:
    """What the run chose: kernels and the share of decoder layers recomputed in backward
    (ft logs both; the baseline's come from its flags)."""
    if kind == "baseline":
        return {"kernels": "transformers use_liger_kernel" if "liger" in mods else "none",
                "recomputed_share": 0.0 if "nockpt" in mods else 1.0}
    if kind == "axolotl":
        return axolotl_tool.kernels(mods, lines)
    out = {"kernels": None,
           "recomputed_share": 1.0 if "ckpt" in mods else 0.0}  # auto: from the log
    for text in lines:
        if m := re.search(r"ft\.kernels: kernels: (.*)$", text):
            out["kernels"] = m.group(1)
        if m := re.search(r"gradient_checkpointing auto: (\d+) of (\d+)", text):
            out["recomputed_share"] = round(int(m.group(1)) / int(m.group(2)), 3)
            out["recomputed_layers"] = f"{m.group(1)}/{m.group(2)}"
        if m := re.search(r"activation memory estimate: (.*)$", text):
            out["memory_estimate"] = m.group(1)
        if "FSDP2 " in text and "layers sharded over" in text:
            out["frozen_replicated"] = "frozen weights replicated" in text
    return out


def utilization(line: dict, params: int, peak_tflops: float | None) -> dict:
    """HFU and MFU on both bases; none without a matmul peak or a rate."""
    if not (peak_tflops and line.get("tokens_per_s")):
        return {}
    peak = peak_tflops * 1e12
    # HFU: forward 2N + activation gradients 2N + recompute 2N x recomputed share.
    hfu_n = (4 + 2 * line["recomputed_share"]) * params
    return {"hfu": round(hfu_n * line["tokens_per_s"] / peak, 3),
            "mfu": round(4 * params * line["tokens_per_s"] / peak, 3),
            "hfu_wall": round(hfu_n * line["tokens_per_s_wall"] / peak, 3),
            "mfu_wall": round(4 * params * line["tokens_per_s_wall"] / peak, 3),
            "peak_tflops": peak_tflops}


def ft_summary(out_dir: Path) -> dict | None:
    """ft's own ft-train-summary.json (no per-step timing): its train/data/model sections
    and first/last loss; None when the run wrote none."""
    path = out_dir / "ft-train-summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    losses = [e["loss"] for e in summary.get("log_history", []) if "loss" in e]
    data = {k: v for k, v in summary.get("data", {}).items() if k != "datasets"}
    return {"train": summary.get("train"), "data": data, "model": summary.get("model"),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


def comparisons(line: dict, earlier: list[dict], topo: tuple[int, int] | None) -> dict:
    """The run against the earlier runs of its case: loss gaps, tokens/s ratios, and for
    a multi-GPU tool its scaling from one GPU and from one node."""
    case, tool = line["case"], line["tool"]
    same_case = [x for x in earlier if x.get("case") == case]
    out: dict = {
        "loss_vs": {x["tool"]: loss_gap(line["loss"], x["loss"])
                    for x in same_case if x.get("loss")},
        "ratio_vs": {x["tool"]: round(line["tokens_per_s"] / x["tokens_per_s"], 3)
                     for x in same_case
                     if x.get("tokens_per_s") and x["tool"].startswith("baseline")}}
    ref = _measured(same_case, "baseline")
    single = _measured(same_case, single_gpu_tool(tool))
    if topo and single:
        # The scaling target: tokens/s per GPU against the same tool on one GPU.
        out["scaling_vs_1gpu"] = {
            "tool": single["tool"],
            "per_gpu": round(line["tokens_per_s"] / single["tokens_per_s"], 3),
            "per_gpu_wall": round(line["tokens_per_s_wall"] / single["tokens_per_s_wall"], 3)}
    if topo and topo[0] > 1:
        # The emulation target: N nodes against one node with the same GPUs.
        one_node = tool.replace(f"@{topo[0]}x{topo[1]}", f"@1x{topo[0] * topo[1]}")
        same = _measured(same_case, one_node)
        if same:
            out["vs_one_node"] = {"tool": one_node, "per_gpu": round(
                line["tokens_per_s"] / same["tokens_per_s"], 3)}
    if tool.startswith("ft") and ref:
        out["ratio_vs_baseline"] = {
            "tokens_per_s": round(line["tokens_per_s"] / ref["tokens_per_s"], 3),
            "tokens_per_s_wall": round(line["tokens_per_s_wall"] / ref["tokens_per_s_wall"],
                                       3),
            "peak_alloc": _ratio(line.get("peak_alloc_gib"), ref.get("peak_alloc_gib")),
            "peak_gpu_used": _ratio(line.get("peak_gpu_used_gib"),
                                    ref.get("peak_gpu_used_gib")),
        }
    out.update(vs_axolotl(line, same_case))
    return out


def vs_axolotl(line: dict, same_case: list[dict]) -> dict:
    """An ft record against the fastest Axolotl run of its case (the issue's target is
    Axolotl's best): tokens/s and memory ratios, and the GPU memory difference in GiB."""
    runs = [x for x in same_case if x["tool"].startswith("axolotl") and x.get("tokens_per_s")]
    if not (line["tool"].startswith("ft") and line.get("tokens_per_s") and runs):
        return {}
    ref = max(runs, key=lambda x: x["tokens_per_s"])
    used, ref_used = line.get("peak_gpu_used_gib"), ref.get("peak_gpu_used_gib")
    return {"ratio_vs_axolotl": {
        "tool": ref["tool"],
        "tokens_per_s": round(line["tokens_per_s"] / ref["tokens_per_s"], 3),
        "tokens_per_s_wall": _ratio(line.get("tokens_per_s_wall"),
                                    ref.get("tokens_per_s_wall")),
        "peak_alloc": _ratio(line.get("peak_alloc_gib"), ref.get("peak_alloc_gib")),
        "peak_gpu_used": _ratio(used, ref_used),
        "gpu_gib_minus_axolotl": round(used - ref_used, 2) if used and ref_used else None}}


def finish_case(lines: list[dict], case: str) -> list[dict]:
    """When every run of `case` is done: each record's loss gaps to every other run of the
    case (not only the earlier ones) and each ft record's ratio to Axolotl's best. Updates
    the records in place; returns the ft records that have a ratio to Axolotl."""
    same_case = [x for x in lines if x.get("case") == case]
    for line in same_case:
        if line.get("loss"):
            line["loss_vs"] = {x["tool"]: loss_gap(line["loss"], x["loss"])
                               for x in same_case if x is not line and x.get("loss")}
        line.update(vs_axolotl(line, same_case))
    return [x for x in same_case if x.get("ratio_vs_axolotl")]


def _measured(records: list[dict], tool: str) -> dict | None:
    """The first record of `tool` that has a rate."""
    return next((x for x in records if x.get("tool") == tool and x.get("tokens_per_s")), None)


def loss_gap(a: list[float], b: list[float]) -> dict | None:
    """Per-step loss difference of two runs over their common steps."""
    n = min(len(a), len(b))
    if not n:
        return None
    gaps = [abs(x - y) for x, y in zip(a[:n], b[:n], strict=True)]
    return {"steps": n, "first": round(gaps[0], 5), "max": round(max(gaps), 5),
            "mean": round(sum(gaps) / n, 5)}


def print_table(lines: list[dict]) -> None:
    rows = [x for x in lines if x.get("case")]
    print("\ncase                    tool              mbs tok/s(step) tok/s(wall) peak_alloc "
          "gpu_used   HFU   MFU  ratio(step) ratio(wall) vs axolotl", flush=True)
    for x in rows:
        if x.get("skipped") or x.get("error") is not None:
            print(f"{x['case']:<23} {x['tool']:<17} {x.get('mbs', ''):>3}  "
                  f"{'skipped: ' + x['skipped'] if x.get('skipped') else 'FAILED'}")
            continue
        r = x.get("ratio_vs_baseline") or {}
        ax = (x.get("ratio_vs_axolotl") or {}).get("tokens_per_s", "")
        first = next((y for y in rows if y.get("case") == x["case"] and y.get("loss")), {})
        gap = (x.get("loss_vs") or {}).get(first.get("tool")) or {}
        print(f"{x['case']:<23} {x['tool']:<17} {x['mbs']:>3} {x['tokens_per_s']:>11} "
              f"{x['tokens_per_s_wall']:>11} {x.get('peak_alloc_gib')!s:>10} "
              f"{x.get('peak_gpu_used_gib')!s:>8} {x.get('hfu')!s:>5} {x.get('mfu')!s:>5} "
              f"{r.get('tokens_per_s', '')!s:>11} {r.get('tokens_per_s_wall', '')!s:>11} "
              f"{ax!s:>10} "
              f"recomputed {x.get('recomputed_share')} loss gap vs {first.get('tool')}: "
              f"max {gap.get('max')} mean {gap.get('mean')}", flush=True)


def _r(x, n):
    return None if x is None else round(x, n)


def _ratio(x, y):
    return round(x / y, 3) if x and y else None
