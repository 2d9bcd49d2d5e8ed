"""Axolotl 0.21 on bench/moe_bench.py's MoE shape: the same random Qwen3-30B-A3B layers, the
same completion rows and the same spec keys (QLoRA with the experts quantized,
`quantize_moe_experts`; LoRA on attention and on the experts' fused weights), trained by
Axolotl under bench/probe.py (the harness's per-step timer, peak memory, per-step loss).

    python3 bench/moe_axolotl.py --axolotl-site /tmp/axsite [--kernels scattermoe] \
        [--layers 4] [--steps 20] [--warm 5] [--seq 2048]
    python3 bench/moe_axolotl.py --tiny --axolotl-site DIR     # a CPU: experts not quantized

`--kernels none` (default) leaves the experts to transformers' experts implementation
(`--experts` picks one: eager, grouped_mm, batched_mm) with Axolotl's bnb parametrization
dequantizing the 4-bit experts; `--kernels scattermoe` adds Axolotl's KernelsPlugin with its
vendored Triton ScatterMoE-LoRA (`use_scattermoe`), which on 4-bit experts dequantizes only
the active experts. `use_kernels` is set false: true would ask transformers to fetch hub
kernels (`kernels` package, Hugging Face Hub), which the offline GPU machine cannot reach;
Axolotl registers ScatterMoE without it. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import axolotl_tool
import moe_bench
from gpu_meter import GpuMemPoller
from run_records import figures

BENCH = Path(__file__).resolve().parent
# moe_bench.spec keys that are ft's own (Axolotl has no `liger_kernel`; its Liger plugin is
# for dense models, as ft's is switched off there)
FT_ONLY = ("liger_kernel",)


def axolotl_config(model: Path, data: Path, work: Path, args) -> dict:
    config = {k: v for k, v in moe_bench.spec(model, data, work, args).items()
              if k not in FT_ONLY}
    config.update(val_set_size=0, num_epochs=1, use_wandb=False,
                  dataset_prepared_path=str(work / f"axolotl-prepared-{args.kernels}"),
                  output_dir=str(work / f"axolotl-run-{args.kernels}"),
                  bf16=not args.tiny, fp16=False,
                  # packed rows kept apart (on CUDA with bf16: its torch varlen path)
                  attn_implementation="sdpa")
    if args.kernels == "scattermoe":
        config.update(plugins=["axolotl.integrations.kernels.KernelsPlugin"],
                      use_kernels=False, use_scattermoe=True)
    if args.tiny:  # Axolotl's Triton LoRA kernels and its expert quantization need CUDA
        config.update(dict.fromkeys(axolotl_tool.LORA_KERNEL_KEYS, False),
                      quantize_moe_experts=False)
    return config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--axolotl-site", default="/tmp/axsite")
    ap.add_argument("--kernels", choices=("none", "scattermoe"), default="none")
    ap.add_argument("--experts", choices=("eager", "grouped_mm", "batched_mm"),
                    help="experts_implementation (default: the model's; --kernels none)")
    ap.add_argument("--tiny", action="store_true", help="tiny shape, fp32 (a CPU test)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--work", type=Path, default=Path("/tmp/ft-moe-bench"))
    args = ap.parse_args()
    if why := axolotl_tool.missing(args.axolotl_site):
        raise SystemExit(why)
    if args.tiny:
        args.layers, args.seq = 2, min(args.seq, 256)
    work = args.work / ("tiny" if args.tiny else f"30b-a3b-{args.layers}l")
    work.mkdir(parents=True, exist_ok=True)
    model = moe_bench.build_model(work / "model", moe_bench.TINY if args.tiny
                                  else moe_bench.SHAPE_30B_A3B, args.layers)
    data = moe_bench.write_data(work / "data.jsonl", rows=max(64, args.steps * args.seq // 300),
                                words=400)
    import yaml

    config_path = work / f"axolotl-{args.kernels}.yaml"
    config_path.write_text(yaml.safe_dump(axolotl_config(model, data, work, args),
                                          sort_keys=False))
    probe_json = work / f"probe-axolotl-{args.kernels}.json"
    probe_json.unlink(missing_ok=True)
    env = axolotl_tool.environment(
        dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
             TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"),
        args.axolotl_site, work)
    cmd = [sys.executable, str(BENCH / "probe.py"), str(probe_json), "-m",
           "axolotl.cli.train", str(config_path)]
    start = time.monotonic()
    with GpuMemPoller() as poll, open(work / f"axolotl-{args.kernels}.log", "w") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    text = (work / f"axolotl-{args.kernels}.log").read_text(errors="replace")
    record = {"bench": "moe-qlora", "tool": f"axolotl:{args.kernels}",
              "shape": "tiny" if args.tiny else "qwen3-30b-a3b", "layers": args.layers,
              "seq": args.seq, "steps": args.steps, "rc": rc,
              "process_s": round(time.monotonic() - start, 1),
              "scattermoe_registered": "Registered 'scattermoe'" in text}
    if rc or not probe_json.exists():
        record["error"] = next((x for x in reversed(text.splitlines()) if x.strip()), "")[-500:]
    else:
        p = json.loads(probe_json.read_text())
        record.update(figures(p, args.warm), peak_alloc_gib=p.get("peak_alloc_gib"),
                      peak_gpu_used_gib=round(poll.peak_mib / 1024, 2)
                      if poll.peak_mib else None,
                      loss=[round(x, 5) for x in p["loss"]])
    print(json.dumps(record), flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
