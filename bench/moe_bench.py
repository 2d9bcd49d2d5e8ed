"""MoE QLoRA proof on one GPU: Qwen3-30B-A3B's layer shapes (hidden 2048, 128 experts, top-8,
expert width 768, 32 query / 4 key-value heads of 128, vocabulary 151,936), cut to a few
decoder layers, random weights built here. `ft train`'s own code path (in this process):
`load_in_4bit` + `quantize_moe_experts` (the experts 4-bit too), LoRA on attention and on the
experts' fused weights (`lora_target_parameters`), packed rows of `--seq` tokens. Prints one
JSON line: tokens/s over the steps after `--warm`, peak GPU memory (allocated and reserved),
the first and last loss, the experts kernel in use, the packed experts' size.

    python bench/moe_bench.py [--layers 4] [--steps 20] [--warm 5] [--seq 2048]
    python bench/moe_bench.py --tiny     # the same path at a tiny shape, on a CPU (a test)

On the GPU machine the carried wheels come first (bench/README.md: fetch_wheels.sh,
device_setup.py). A 48-layer 30B-A3B holds about 15 GiB of 4-bit experts; this script's
`packed_expert_gib` per layer times 48 says how far that is from one 80 GB GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen3-30B-A3B (config.json of Qwen/Qwen3-30B-A3B), all but the layer count.
SHAPE_30B_A3B = {"hidden_size": 2048, "num_experts": 128, "num_experts_per_tok": 8,
                 "moe_intermediate_size": 768, "intermediate_size": 6144,
                 "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                 "vocab_size": 151936, "max_position_embeddings": 40960,
                 "rope_theta": 1000000.0, "norm_topk_prob": True,
                 "tie_word_embeddings": False}
TINY = {"hidden_size": 64, "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 32, "intermediate_size": 128, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 4096,
        "tie_word_embeddings": False}

_STEP_ENDS: list[float] = []  # wall time at the end of each optimizer step
_TOKENS: list[int] = []  # non-pad tokens of each micro batch, in order
_FACTS: dict = {}


def build_model(out: Path, shape: dict, layers: int) -> Path:
    """Random Qwen3-MoE of `shape` with `layers` decoder layers and the tiny tokenizer
    (its ids are a subset of the vocabulary: no resize), saved in bf16."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from trainer.models.tiny import BOS, EOS, PAD, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (BOS, EOS, PAD)}
    vocab = max(shape.get("vocab_size", 0), len(tokenizer))
    config = Qwen3MoeConfig(**{**shape, "vocab_size": vocab}, num_hidden_layers=layers,
                            bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                            pad_token_id=ids[PAD])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    for param in model.parameters():  # from_config leaves some at zero (the routers)
        if param.dim() >= 2:
            torch.nn.init.normal_(param, std=0.02)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return out


def write_data(path: Path, rows: int, words: int) -> Path:
    """Completion rows of words drawn from the tiny corpus (seeded): enough text to pack
    every step's rows full."""
    corpus = (REPO / "examples/tiny/corpus.txt").read_text(encoding="utf-8").split()
    rng = random.Random(0)
    path.write_text("".join(json.dumps({"text": " ".join(rng.choices(corpus, k=words))}) + "\n"
                            for _ in range(rows)), encoding="utf-8")
    return path


def spec(model: Path, data: Path, out: Path, args) -> dict:
    return {
        "base_model": str(model), "load_in_4bit": True, "quantize_moe_experts": True,
        "adapter": "qlora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0,
        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "lora_target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        **({"experts_implementation": args.experts} if args.experts else {}),
        "datasets": [{"path": str(data), "type": "completion"}],
        "dataset_prepared_path": str(out / "prepared"), "output_dir": str(out / "run"),
        "sequence_len": args.seq, "sample_packing": True, "micro_batch_size": 1,
        "gradient_accumulation_steps": 1, "max_steps": args.steps, "learning_rate": 2e-4,
        "lr_scheduler": "constant", "optimizer": "adamw_torch", "logging_steps": 1,
        "gradient_checkpointing": True, "bf16": "auto", "save_strategy": "no", "seed": 0,
        # The kernels ft adds on a GPU by default are for dense models; measured here: the
        # MoE path itself.
        "liger_kernel": False, "lora_mlp_kernel": False,
    }


def install(trainer) -> None:
    """FT_TRAINER_HOOKS entry: time each optimizer step, count each micro batch's tokens."""
    from transformers import TrainerCallback

    pad = trainer.processing_class.pad_token_id
    step = trainer.training_step

    def counted(model, inputs, *rest, **kwargs):
        _TOKENS.append(int((inputs["input_ids"] != pad).sum()))
        return step(model, inputs, *rest, **kwargs)

    trainer.training_step = counted

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            _sync()
            _STEP_ENDS.append(time.perf_counter())
            config = trainer.model.config
            _FACTS["experts_implementation"] = getattr(config, "_experts_implementation", None)
            from trainer.models.moe_quantize import packed_bytes

            _FACTS["packed_expert_gib"] = round(packed_bytes(trainer.model) / 2**30, 3)

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            _STEP_ENDS.append(time.perf_counter())

    trainer.add_callback(Clock())


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape (a CPU test)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warm", type=int, default=5, help="steps left out of tokens/s")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--experts", choices=("eager", "grouped_mm", "batched_mm"),
                        help="experts_implementation (default: the model's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ft-moe-bench"))
    parser.add_argument("--model", type=Path, help="a Qwen3-MoE directory to use instead of "
                        "building one (the tests pass their tiny one)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.layers, args.seq = 2, min(args.seq, 256)
    shape = TINY if args.tiny else SHAPE_30B_A3B
    work = args.work / ("tiny" if args.tiny else f"30b-a3b-{args.layers}l")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = args.model or build_model(work / "model", shape, args.layers)
    built_s = time.perf_counter() - t0
    data = write_data(work / "data.jsonl", rows=max(64, args.steps * args.seq // 300),
                      words=400)
    return run(spec(model, data, work, args), args, built_s)


def run(spec_dict: dict, args, built_s: float) -> dict:
    import torch

    from trainer.loop.hooks import HOOKS_ENV
    from trainer.loop.train import train
    from trainer.torch_free.training import TrainingConfig

    _STEP_ENDS.clear()
    _TOKENS.clear()
    sys.modules.setdefault("moe_bench", sys.modules[__name__])
    os.environ[HOOKS_ENV] = "moe_bench:install"
    out = train(TrainingConfig(**spec_dict))
    summary = json.loads((out / "ft-train-summary.json").read_text())
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    timed = slice(args.warm, args.steps)
    seconds = _STEP_ENDS[args.steps] - _STEP_ENDS[args.warm]
    cuda = torch.cuda.is_available()
    record = {
        "bench": "moe-qlora", "shape": "tiny" if args.tiny else "qwen3-30b-a3b",
        "layers": args.layers, "seq": args.seq, "steps": args.steps,
        "timed_steps": f"{args.warm + 1}-{args.steps}",
        "tokens_per_s": round(sum(_TOKENS[timed]) / seconds, 1),
        "peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)
        if cuda else None,
        "loss_first": losses[0], "loss_last": losses[-1], **_FACTS,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "model_build_s": round(built_s, 1),
    }
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
