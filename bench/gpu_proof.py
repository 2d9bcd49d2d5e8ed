"""Issue 5's proof on the GPU machine: `ft train` on a random-init Llama-3.1-8B shape (saved
locally first, no hub) in each distribution mode, a few dozen steps each; the loss must stay
finite, the adapter must be saved, and it must reload onto the base model and change its
output. One JSON line per case in $OUT/proof.jsonl.

    python3 bench/gpu_proof.py --out $OUT [--cases lora,qlora,fsdp-qlora,fsdp-lora] [--steps 30]

Cases (GPUs: how many this machine must have):
  lora, qlora        plain `ft train` (1 GPU)
  fsdp-lora          FSDP2 world of 1 under torchrun, cpu_ram_efficient_loading: rank 0's
                     weights leave for the meta device and come back by broadcast (1 GPU)
  fsdp-qlora         FSDP2 + QLoRA, 4-bit weights in bf16 storage, world of 1 (1 GPU)
  fsdp-qlora-2nodes  `ft launch --backend local --nodes 2 --gpus-per-node 1`, preflight on
  fsdp-qlora-1x2     the same on one node of 2 GPUs: its losses must match the 2-node run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
FSDP = {"fsdp": ["full_shard", "auto_wrap"],
        "fsdp_config": {"fsdp_version": 2, "fsdp_transformer_layer_cls_to_wrap":
                        "LlamaDecoderLayer", "fsdp_state_dict_type": "FULL_STATE_DICT"}}
CASES = {
    "lora": {"adapter": "lora"},
    "qlora": {"adapter": "qlora", "load_in_4bit": True},
    "fsdp-lora": {"adapter": "lora", **FSDP, "fsdp_config": {
        **FSDP["fsdp_config"], "fsdp_cpu_ram_efficient_loading": True}},
    "fsdp-qlora": {"adapter": "qlora", "load_in_4bit": True, **FSDP},
    "fsdp-qlora-2nodes": {"adapter": "qlora", "load_in_4bit": True, **FSDP},
    "fsdp-qlora-1x2": {"adapter": "qlora", "load_in_4bit": True, **FSDP},
}
LAUNCH = {"fsdp-qlora-2nodes": (2, 1), "fsdp-qlora-1x2": (1, 2)}


def env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, ["/tmp/site", str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def prepare(work: Path, shape: str, seq: int, rows: int) -> tuple[Path, Path]:
    model_dir, data = work / f"rand-{shape}", work / f"fixed-{seq}.jsonl"
    subprocess.run([sys.executable, str(REPO / "bench" / "run_bench.py"), "_prep",
                    str(model_dir), shape, str(seq), str(rows), str(data)],
                   check=True, env=env())
    return model_dir, data


def write_spec(work: Path, case: str, model_dir: Path, data: Path, a) -> tuple[Path, Path]:
    out = work / f"out-{case}"
    nodes, gpus = LAUNCH.get(case, (2, 1))
    spec = {"base_model": str(model_dir), "datasets": [{"path": str(data)}],
            "output_dir": str(out), "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
            "lora_target_linear": True, "sequence_len": a.seq, "micro_batch_size": 1,
            "gradient_accumulation_steps": 1, "max_steps": a.steps, "save_steps": a.steps,
            "optimizer": "adamw_torch", "learning_rate": 2e-4, "lr_scheduler": "constant",
            "bf16": True, "gradient_checkpointing": True, "logging_steps": 1, "seed": 0,
            **CASES[case],
            "launch": {"name": case, "nodes": nodes, "gpus_per_node": gpus,
                       "cluster": "auto", "preflight": case in LAUNCH}}
    path = work / f"spec-{case}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, out


def command(case: str, spec: Path) -> list[str]:
    if case in LAUNCH:
        return [sys.executable, "-m", "orchestrator.cli", "launch", str(spec), "--backend",
                "local"]
    if case.startswith("fsdp"):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m",
                "orchestrator.cli", "train", str(spec)]
    return [sys.executable, "-m", "orchestrator.cli", "train", str(spec)]


RELOAD = r"""
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
model_dir, out, quantized, data = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                       bnb_4bit_compute_dtype=torch.bfloat16) if quantized else None
base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                            quantization_config=q, device_map={"": 0})
model = PeftModel.from_pretrained(base, out)
ids = torch.tensor([json.loads(open(data).readline())["input_ids"][:512]], device="cuda")
with torch.no_grad():
    with model.disable_adapter():
        plain = model(input_ids=ids, labels=ids).loss.item()
    tuned = model(input_ids=ids, labels=ids).loss.item()
print(json.dumps({"reload_ok": True, "loss_base": plain, "loss_with_adapter": tuned}))
"""


def run_case(case: str, work: Path, model_dir: Path, data: Path, a, log) -> dict:
    spec, out = write_spec(work, case, model_dir, data, a)
    start = time.perf_counter()
    proc = subprocess.run(command(case, spec), cwd=work, env=env(), capture_output=True,
                          text=True)
    record = {"case": case, "rc": proc.returncode, "wall_s": round(time.perf_counter() - start,
                                                                    1)}
    log.write(f"===== {case}\n{proc.stdout}\n{proc.stderr}\n")
    if proc.returncode != 0:
        record["tail"] = (proc.stdout + proc.stderr)[-1500:]
        return record
    summary = json.loads((out / "ft-train-summary.json").read_text())
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    record.update(steps=summary["global_step"], world_size=summary["world_size"],
                  loss_first=losses[0], loss_last=losses[-1], losses=losses,
                  finite=all(math.isfinite(x) for x in losses),
                  train_runtime_s=summary["train"].get("train_runtime"),
                  peak_gpu_memory_gib=summary.get("peak_gpu_memory_gib"),
                  model=summary["model"],
                  adapter_bytes=(out / "adapter_model.safetensors").stat().st_size,
                  preflight=[line for line in proc.stdout.splitlines()
                             if "ft pre-flight:" in line])
    reload = subprocess.run([sys.executable, "-c", RELOAD, str(model_dir), str(out),
                             "1" if "qlora" in case else "0", str(data)],
                            env=env(), capture_output=True, text=True)
    lines = [ln for ln in reload.stdout.splitlines() if ln.startswith("{")]
    record["reload"] = json.loads(lines[-1]) if reload.returncode == 0 and lines else \
        {"reload_ok": False, "tail": reload.stderr[-800:]}
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/ftproof")
    ap.add_argument("--cases", default="lora,qlora,fsdp-qlora,fsdp-lora")
    ap.add_argument("--shape", default="8b")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=540)
    a = ap.parse_args()
    begin = time.perf_counter()
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    model_dir, data = prepare(work, a.shape, a.seq, rows=4 * a.steps)
    with (out / "proof.log").open("w") as log, (out / "proof.jsonl").open("a") as results:
        for case in [c for c in a.cases.split(",") if c]:
            if time.perf_counter() - begin > a.budget_s:
                print(json.dumps({"case": case, "skipped": "time budget"}), flush=True)
                continue
            record = run_case(case, work, model_dir, data, a, log)
            record["shape"] = a.shape
            line = json.dumps(record)
            results.write(line + "\n")
            results.flush()
            print(line, flush=True)


if __name__ == "__main__":
    main()
