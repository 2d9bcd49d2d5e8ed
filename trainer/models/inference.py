"""`ft inference`: generate with the trained model, formatted with the training chat template."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trainer.models.mistral_tokenizer import is_mistral_common, load_mistral_common_tokenizer
from trainer.models.quantization_config import prequantized_config
from trainer.models.source import base_config_kwargs, model_class, model_kwargs
from trainer.torch_free.training import TrainingConfig


def load_for_inference(cfg: TrainingConfig, use_merged: bool | None = None):
    """The merged model if it exists (or when asked), else base + adapter, else a full
    fine-tune's own output, else the base."""
    output_dir = Path(cfg.output_dir)
    merged = output_dir / "merged"
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    device_map = "auto" if torch.cuda.is_available() else "cpu"
    if use_merged or (use_merged is None and (merged / "config.json").is_file()):
        model = AutoModelForCausalLM.from_pretrained(merged, dtype=dtype, device_map=device_map)
        return model, _tokenizer(cfg, merged)
    tokenizer = _tokenizer(cfg, output_dir)
    if cfg.adapter is None and (output_dir / "config.json").is_file():
        # A full fine-tune saved the whole model: that, not the base it started from.
        model = model_class(cfg).from_pretrained(
            output_dir, dtype=dtype, device_map=device_map,
            trust_remote_code=cfg.trust_remote_code)
        return model.eval(), tokenizer
    # The same base the adapter was trained on: class, revision and remote-code setting.
    model = model_class(cfg).from_pretrained(cfg.base_model, dtype=dtype,
                                             device_map=device_map,
                                             quantization_config=prequantized_config(cfg),
                                             **model_kwargs(cfg),
                                             **base_config_kwargs(cfg))
    if len(tokenizer) != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if (output_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, output_dir)
    return model.eval(), tokenizer


def _tokenizer(cfg: TrainingConfig, saved: Path):
    """The tokenizer saved with the output, else the base model's; mistral-common's in its
    inference mode (a chat that ends with the user's turn)."""
    if cfg.tokenizer_use_mistral_common:
        has_own = (saved / "tekken.json").is_file()
        return load_mistral_common_tokenizer(cfg, str(saved) if has_own else None, mode="test")
    return AutoTokenizer.from_pretrained(
        saved if (saved / "tokenizer_config.json").is_file() else cfg.base_model)


def build_prompt(tokenizer, prompt: str, system: str | None = None) -> str:
    """Chat-format the prompt when the tokenizer has a template (it is the training one)."""
    if not tokenizer.chat_template:
        return prompt
    return tokenizer.apply_chat_template(_messages(prompt, system), tokenize=False,
                                         add_generation_prompt=True)


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": prompt}]


def generate(model, tokenizer, prompt: str, *, max_new_tokens: int = 128,
             temperature: float = 0.0, system: str | None = None) -> str:
    if is_mistral_common(tokenizer):  # its control tokens come only from its chat encoding
        inputs = tokenizer.apply_chat_template(_messages(prompt, system), return_tensors="pt")
    else:
        text = build_prompt(tokenizer, prompt, system)
        inputs = tokenizer(text, return_tensors="pt",
                           add_special_tokens=not tokenizer.chat_template)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else \
        {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
