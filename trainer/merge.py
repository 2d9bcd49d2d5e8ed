"""`ft merge-lora`: fold the trained adapter into the base weights -> output_dir/merged.

The base is loaded unquantized (a QLoRA adapter merges into bf16/fp32 weights, not into
4-bit ones) with low_cpu_mem_usage, so only one copy of the weights is in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer

from trainer.contract.training import TrainingConfig
from trainer.model_source import model_class, model_kwargs

log = logging.getLogger("ft.merge")


def merge_lora(cfg: TrainingConfig, *, on_cpu: bool = False,
               adapter_dir: Path | None = None) -> Path:
    from peft import PeftModel

    adapter_dir = adapter_dir or Path(cfg.output_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no trained adapter in {adapter_dir} (adapter_config.json is "
                                "missing); run `ft train` first")
    dtype = torch.bfloat16 if (cfg.load_in_4bit or cfg.bf16 is True) else torch.float32
    device_map = "cpu" if on_cpu or not torch.cuda.is_available() else "auto"
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    base = model_class(cfg).from_pretrained(cfg.base_model, dtype=dtype,
                                            device_map=device_map, low_cpu_mem_usage=True,
                                            **model_kwargs(cfg))
    if len(tokenizer) != base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    target = Path(cfg.output_dir) / "merged"
    merged.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    log.info("merged %s into %s -> %s", adapter_dir, cfg.base_model, target)
    return target
