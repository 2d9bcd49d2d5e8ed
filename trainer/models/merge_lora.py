"""`ft merge-lora`: fold the trained adapter into the base weights -> output_dir/merged.

The base is loaded unquantized (a QLoRA adapter merges into bf16/fp32 weights, not into
4-bit ones) with low_cpu_mem_usage, so only one copy of the weights is in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer

from trainer.models.mistral_tokenizer import load_mistral_common_tokenizer
from trainer.models.quantization_config import prequantized_config
from trainer.models.source import base_config_kwargs, load_config, model_class, model_kwargs
from trainer.torch_free.training import TrainingConfig

log = logging.getLogger("ft.merge")


def merged_dtype(cfg: TrainingConfig) -> torch.dtype:
    """The merged model's dtype: bf16/fp16 where the spec says so (QLoRA computes in bf16),
    else (`bf16: auto`) the dtype the base checkpoint is stored in. A bf16 base merged in
    fp32 doubled the files and the memory of everything that loads them, for precision
    the base never had; fp32 stays for an fp32 base or `bf16: false`."""
    if cfg.load_in_4bit or cfg.bf16 is True:
        return torch.bfloat16
    if cfg.fp16 is True:
        return torch.float16
    if cfg.bf16 is False:
        return torch.float32
    config = load_config(cfg)
    stored = getattr(config.get_text_config(), "dtype", None) or getattr(config, "dtype", None)
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    return stored if stored in (torch.bfloat16, torch.float16) else torch.float32


def merge_lora(cfg: TrainingConfig, *, on_cpu: bool = False,
               adapter_dir: Path | None = None) -> Path:
    from peft import PeftModel

    adapter_dir = adapter_dir or Path(cfg.output_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no trained adapter in {adapter_dir} (adapter_config.json is "
                                "missing); run `ft train` first")
    dtype = merged_dtype(cfg)
    device_map = "cpu" if on_cpu or not torch.cuda.is_available() else "auto"
    tokenizer = load_mistral_common_tokenizer(cfg, str(adapter_dir)) if \
        cfg.tokenizer_use_mistral_common else AutoTokenizer.from_pretrained(adapter_dir)
    base = model_class(cfg).from_pretrained(cfg.base_model, dtype=dtype,
                                            device_map=device_map, low_cpu_mem_usage=True,
                                            quantization_config=prequantized_config(cfg),
                                            **model_kwargs(cfg), **base_config_kwargs(cfg))
    if len(tokenizer) != base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    target = Path(cfg.output_dir) / "merged"
    merged.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    log.info("merged %s into %s -> %s", adapter_dir, cfg.base_model, target)
    return target
