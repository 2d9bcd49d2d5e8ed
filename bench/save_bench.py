"""Save time and rank 0's host memory of a sharded full fine-tune's final model, the old way
and ft's: run under torchrun on the GPU machine,

    torchrun --nproc-per-node 2 bench/save_bench.py --out $OUT --shape 8b

Each rank builds the shape (random weights, bf16, on its GPU), upcasts to fp32 master
weights and shards it with ft's own `shard_model`, exactly as a full fine-tune under FSDP2
is laid out before training. Then rank 0 measures, in this order:

- `export`: trainer/distributed/sharded_export.py (a tensor at a time, bf16, shards of 5 GB);
- `gather`: what ft did before: torch's full state dict on rank 0's host (fp32), then
  `save_pretrained`.

One JSON line per way: seconds, bytes on disk, dtype, and rank 0's peak RSS growth over the
save (trainer/distributed/host_memory.py). Training does not change what a save costs, so
none runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.distributed.fsdp import ShardingPlan, gather_state_dict, shard_model  # noqa: E402
from trainer.distributed.host_memory import PeakRss  # noqa: E402
from trainer.distributed.sharded_export import export_full_model  # noqa: E402
from trainer.distributed.world_ranks import WorldRanks  # noqa: E402

SHAPES = {
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8),
    # A CPU try of this script (gloo): `--shape tiny`.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}


def build(shape: str, device: torch.device):
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[shape], vocab_size=128256, max_position_embeddings=4096)
    with device:
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def on_disk(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", choices=list(SHAPES), default="8b")
    ap.add_argument("--scratch", default="/tmp/save-bench")
    ap.add_argument("--ways", default="export,gather")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    world = WorldRanks.from_env(os.environ)
    device = torch.device("cuda", world.local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    model = build(a.shape, device)
    plan = ShardingPlan(layer_classes=(), reshard_after_forward=True, offload_params=False,
                        cpu_ram_efficient_loading=False, param_dtype=torch.bfloat16)
    shard_model(model, plan, device, world)
    for way in a.ways.split(","):
        target = Path(a.scratch) / way
        if world.is_main:
            shutil.rmtree(target, ignore_errors=True)
        dist.barrier()
        memory, start = PeakRss(), time.monotonic()
        if way == "export":
            export_full_model(model, target, plan.param_dtype, is_main=world.is_main)
        else:
            state = gather_state_dict(model, trainable_only=False, rank=world.rank)
            if world.is_main:
                model.save_pretrained(target, state_dict=state, safe_serialization=True)
            del state
        dist.barrier()
        if world.is_main:
            from safetensors import safe_open

            first = sorted(target.glob("*.safetensors"))[0]
            with safe_open(first, "pt") as f:
                dtype = str(f.get_slice(next(iter(f.keys()))).get_dtype())
            line = {"tool": f"save-{way}", "shape": a.shape, "world": world.world_size,
                    "seconds": round(time.monotonic() - start, 1),
                    "bytes_on_disk": on_disk(target), "dtype": dtype,
                    "rank0_rss_growth_gib": round(memory.growth_bytes() / 2**30, 2),
                    "gpu": torch.cuda.get_device_name() if cuda else None}
            print(json.dumps(line), flush=True)
            with open(Path(a.out) / "save.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            shutil.rmtree(target, ignore_errors=True)
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
