"""The memory estimate `ft validate` prints (orchestrator/spec/memory_fit.py) against the peak
`ft train` really reaches, on one GPU: Llama-3.1-8B's shape (hidden 4096, 32 layers, 32/8
heads, intermediate 14336, vocabulary 128256), random weights built here (no download).

Cases: LoRA (r16, all linear) with `gradient_checkpointing: auto` and with `true`, QLoRA
(nf4) with `auto`, and a full fine-tune with `auto` on the first 16 of the 32 layers
(`overrides_of_model_config: {num_hidden_layers: 16}`: the whole 8B's weights, gradients
and AdamW state need ~60 GiB before any activation, which with its activations leaves no
room on one 80 GB GPU). Packed rows of `--seq` tokens, `--mbs` rows per step, so a batch
holds the most tokens the estimate plans for; ft's default kernels (Liger where installed).

Each case is its own `ft train` process (this checkout's CLI on a generated spec); an
FT_TRAINER_HOOKS hook in it records torch.cuda.max_memory_allocated / _reserved after the
last step and how many decoder layers the trainer recomputes. One JSON line per case:
the estimate at the trainer's own recompute plan, the measured peaks, the relative error.

    python bench/memory_estimate_check.py [--cases lora,lora-ckpt,qlora,full] [--steps 3]
    python bench/memory_estimate_check.py --tiny   # the same path at a tiny shape on a CPU

On the GPU machine the carried wheels come first (bench/README.md: device_setup.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "vocab_size": 128256, "max_position_embeddings": 131072, "rope_theta": 500000.0,
            "tie_word_embeddings": False}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "max_position_embeddings": 4096, "tie_word_embeddings": False}
CASES = {  # name -> spec keys on top of the common ones
    "lora": {"adapter": "lora", "gradient_checkpointing": "auto"},
    "lora-ckpt": {"adapter": "lora", "gradient_checkpointing": True},
    "qlora": {"adapter": "qlora", "load_in_4bit": True, "gradient_checkpointing": "auto"},
    "full": {"gradient_checkpointing": "auto"},
}
FULL_LAYERS = {"8b": 16, "tiny": 1}
RECORD_ENV = "FT_MEMCHECK_RECORD"


def install(trainer) -> None:
    """FT_TRAINER_HOOKS entry (in the `ft train` process): record the recompute plan when
    training begins and the peak memory when it ends."""
    import torch
    from transformers import TrainerCallback

    from trainer.models.activation_memory import decoder_layers

    facts: dict = {}

    class Peak(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            layers = decoder_layers(trainer.model)
            facts["layers"] = len(layers)
            facts["recomputed"] = sum(bool(getattr(layer, "gradient_checkpointing", False))
                                      for layer in layers)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_train_end(self, args, state, control, **kwargs):
            cuda = torch.cuda.is_available()
            facts["max_allocated"] = torch.cuda.max_memory_allocated() if cuda else None
            facts["max_reserved"] = torch.cuda.max_memory_reserved() if cuda else None
            facts["gpu_total"] = torch.cuda.get_device_properties(0).total_memory \
                if cuda else None
            facts["device"] = torch.cuda.get_device_name() if cuda else "cpu"
            Path(os.environ[RECORD_ENV]).write_text(json.dumps(facts))

    trainer.add_callback(Peak())


def build_model(out: Path, shape: dict) -> Path:
    """Random Llama of `shape` in bf16 with the tiny tokenizer (its ids are a subset of the
    vocabulary: no resize), saved once."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from trainer.models.tiny import BOS, EOS, PAD, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in (BOS, EOS, PAD)}
    config = LlamaConfig(**{**shape, "vocab_size": max(shape.get("vocab_size", 0),
                                                       len(tokenizer))},
                         bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD])
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model
    return out


def write_data(path: Path, rows: int, words: int) -> Path:
    corpus = (REPO / "examples/tiny/corpus.txt").read_text(encoding="utf-8").split()
    rng = random.Random(0)
    path.write_text("".join(json.dumps({"text": " ".join(rng.choices(corpus, k=words))}) + "\n"
                            for _ in range(rows)), encoding="utf-8")
    return path


def spec(case: str, model: Path, data: Path, work: Path, args) -> dict:
    keys = {
        "base_model": str(model), "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0,
        "lora_target_linear": True, "datasets": [{"path": str(data), "type": "completion"}],
        "dataset_prepared_path": str(work / "prepared"), "output_dir": str(work / case),
        "sequence_len": args.seq, "sample_packing": True, "micro_batch_size": args.mbs,
        "gradient_accumulation_steps": 1, "max_steps": args.steps, "learning_rate": 1e-5,
        "lr_scheduler": "constant", "logging_steps": 1, "save_strategy": "no", "seed": 0,
        "launch": {"gpu": args.gpu},
        **CASES[case],
    }
    if case == "full":
        keys["overrides_of_model_config"] = {"num_hidden_layers": args.full_layers}
    if not keys.get("adapter"):
        for key in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_linear"):
            keys.pop(key)
    return keys


def estimate(keys: dict, shape: dict, recomputed: int, gpu_total: int | None,
             liger: bool) -> dict:
    """The pre-queue estimate (what `ft validate` prints, with Liger's kernels when the
    trainer has them), at its own plan and at the trainer's (`recomputed` layers)."""
    from orchestrator.spec.memory_fit import evaluate
    from trainer.torch_free.memory_estimate import GIB, Estimate, peak, shape_from_config
    from trainer.torch_free.training import TrainingConfig

    t = TrainingConfig(**{k: v for k, v in keys.items() if k != "launch"})
    layers = (keys.get("overrides_of_model_config") or {}).get("num_hidden_layers")
    model_shape = shape_from_config({**shape, "vocab_size": shape.get("vocab_size", 512),
                                     **({"num_hidden_layers": layers} if layers else {})})
    own = evaluate(model_shape, t, 1, gpu_total, optimistic=liger)
    p = own.peak
    est = Estimate(p.static, t.micro_batch_size * t.sequence_len, t.load_in_4bit,
                   *_kernels_of(t, liger))
    at_trainer = peak(model_shape, est, recomputed)
    return {"estimate_bytes": at_trainer.total, "estimate_gib": round(at_trainer.total / GIB, 2),
            "estimate_static_gib": round(p.static / GIB, 2),
            "estimate_activations_gib": round(at_trainer.activations / GIB, 2),
            "estimate_logits_gib": round(at_trainer.logits / GIB, 2),
            "prequeue_plan": own.how, "prequeue_estimate_gib": round(p.total / GIB, 2)}


def _kernels_of(t, liger: bool) -> tuple[bool, bool, bool]:
    from orchestrator.spec.memory_fit import kernel_choices

    return kernel_choices(t, optimistic=liger)


def run_case(case: str, model: Path, data: Path, work: Path, args, shape: dict) -> dict:
    import yaml

    keys = spec(case, model, data, work, args)
    spec_path = work / f"{case}.yaml"
    spec_path.write_text(yaml.safe_dump(keys, sort_keys=False))
    record_path = work / f"{case}.record.json"
    record_path.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).parent), str(REPO), os.environ.get("PYTHONPATH")])),
        "FT_TRAINER_HOOKS": "memory_estimate_check:install", RECORD_ENV: str(record_path)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "orchestrator.cli", "train", str(spec_path)],
                          capture_output=True, text=True, env=env, cwd=work)
    record = {"bench": "memory-estimate", "case": case, "seq": args.seq, "mbs": args.mbs,
              "steps": args.steps, "rc": done.returncode,
              "process_s": round(time.perf_counter() - t0, 1)}
    if done.returncode != 0 or not record_path.is_file():
        out_of_memory = "OutOfMemoryError" in done.stderr or "out of memory" in done.stderr
        return {**record, "out_of_memory": out_of_memory, "stderr_tail": done.stderr[-1500:]}
    facts = json.loads(record_path.read_text())
    liger = _installed("liger_kernel") and facts["device"] != "cpu"
    record.update(facts, liger=liger, **estimate(keys, shape, facts["recomputed"],
                                                 facts["gpu_total"], liger))
    if facts["max_allocated"]:
        measured = facts["max_allocated"] / 2**30
        record["measured_allocated_gib"] = round(measured, 2)
        record["measured_reserved_gib"] = round(facts["max_reserved"] / 2**30, 2)
        record["relative_error"] = round((record["estimate_gib"] - measured) / measured, 3)
    return record


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape (a CPU test)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--mbs", type=int, default=4)
    parser.add_argument("--gpu", default="H100:80GB", help="launch.gpu of the specs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ft-memory-check"))
    args = parser.parse_args(argv)
    name = "tiny" if args.tiny else "8b"
    if args.tiny:
        args.seq, args.mbs = min(args.seq, 128), min(args.mbs, 2)
    args.full_layers = FULL_LAYERS[name]
    shape = TINY if args.tiny else LLAMA_8B
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "config.json").is_file():  # in its own process: no GPU memory kept here
        subprocess.run([sys.executable, __file__, "_build", str(model), json.dumps(shape)],
                       check=True)
    shape = {**shape, "vocab_size": json.loads((model / "config.json").read_text())
             ["vocab_size"]}
    data = write_data(work / "data.jsonl", rows=64 + args.steps * args.mbs * args.seq // 300,
                      words=400)
    records = []
    for case in args.cases.split(","):
        records.append(run_case(case, model, data, work, args, shape))
        print(json.dumps(records[-1]), flush=True)
    return records


if __name__ == "__main__":
    if sys.argv[1:2] == ["_build"]:
        build_model(Path(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        main()
