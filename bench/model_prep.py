"""The model and data every case trains on, built as the baseline builds them.

The baseline script (baseline_hf_peft.py, found by `find_baseline`) is imported for its
SHAPES, VOCAB and `write_data`, so ft and the baseline train the same random-init Llama on
the same rows. `cmd_prep` imports torch and transformers, so it runs in a process of its
own (`run_bench.py _prep`, which bench/gpu_proof.py calls too).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def find_baseline() -> Path:
    """The shared baseline script: $FT_BASELINE_SCRIPT, a carried copy in bench/.baseline/
    (../shared does not travel to the GPU machine), or ../shared/bench beside the repo."""
    candidates = [os.environ.get("FT_BASELINE_SCRIPT"),
                  BENCH / ".baseline" / "baseline_hf_peft.py",
                  REPO.parent / "shared" / "bench" / "baseline_hf_peft.py"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("baseline_hf_peft.py not found: mkdir -p bench/.baseline && cp "
                     "../shared/bench/baseline_hf_peft.py bench/.baseline/ (and carry it)")


BASELINE = find_baseline()

# Only for the CPU smoke test (bench/smoke_cpu.py); the baseline knows 8b and 1b.
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)


def load_baseline_module():
    spec = importlib.util.spec_from_file_location("baseline_hf_peft", BASELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # only stdlib at import time; main() is guarded
    return module


BASE = load_baseline_module()
VOCAB = BASE.VOCAB


def shape_of(name: str) -> dict:
    return TINY_SHAPE if name == "tiny" else BASE.SHAPES[name]


def n_params(shape: dict, vocab: int = VOCAB) -> int:
    """Parameters of LlamaForCausalLM (untied embeddings), counted from the shape."""
    d, ff, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    hd = d // shape["num_attention_heads"]
    attn = d * shape["num_attention_heads"] * hd * 2 + d * shape["num_key_value_heads"] * hd * 2
    layer = attn + 3 * d * ff + 2 * d
    return 2 * vocab * d + layers * layer + d


def baseline_row_order(count: int) -> list[int]:
    """The first `count` indices the baseline's Trainer samples from its Fixed dataset
    (10**6 rows, seed 0), read from a Trainer built with the same arguments: ft's spec then
    keeps file order (`curriculum_sampling`), so step k of both sees the same rows and the
    per-step losses compare batch for batch."""
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    class Index(torch.utils.data.Dataset):
        def __len__(self):
            return 10**6

        def __getitem__(self, i):
            return {"i": i}

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=1, seed=0,
                                 report_to=[], save_strategy="no", use_cpu=True,
                                 remove_unused_columns=False)
        trainer = Trainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=Index(),
                          data_collator=lambda rows: [r["i"] for r in rows])
        loader = trainer.get_train_dataloader()
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(0)
        order = []
        for batch in loader:
            order += batch
            if len(order) >= count:
                return order[:count]
    return order


def cmd_prep(model_dir: str, shape_name: str, seq: int, fixed_rows: int, fixed_path: str) -> None:
    """Model (as the baseline builds it) + tokenizer into model_dir; full-length jsonl rows."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(model_dir)
    t0 = time.perf_counter()
    if not (path / "config.json").exists():
        cfg = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=8192, rope_theta=500000.0,
                          **shape_of(shape_name))
        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(cfg)
        model.save_pretrained(model_dir)
        del model
        torch.set_default_dtype(torch.float32)
    t_model = time.perf_counter() - t0
    if not (path / "tokenizer.json").exists():
        # Llama-3 ids for the special tokens; pad is a vocabulary entry (no resize in ft).
        special = {128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
                   128004: "<|finetune_right_pad_id|>"}
        vocab = {special.get(i, f"<t{i}>"): i for i in range(VOCAB)}
        tok = Tokenizer(WordLevel(vocab, unk_token="<t0>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special[128000],
                                       eos_token=special[128001], pad_token=special[128004],
                                       unk_token="<t0>")
        assert len(fast) == VOCAB, len(fast)
        fast.save_pretrained(model_dir)
    if fixed_path and not Path(fixed_path).exists():
        tmp = fixed_path + ".tmp"
        with open(tmp, "w") as f:
            # exactly the baseline's Fixed dataset rows, in the order its Trainer draws them
            for i in baseline_row_order(fixed_rows):
                g = torch.Generator().manual_seed(i)
                ids = torch.randint(0, VOCAB, (seq,), generator=g).tolist()
                f.write(json.dumps({"input_ids": ids, "attention_mask": [1] * seq,
                                    "labels": ids}) + "\n")
        os.replace(tmp, fixed_path)
    print(json.dumps({"prep_model_s": round(t_model, 1),
                      "prep_total_s": round(time.perf_counter() - t0, 1)}))

