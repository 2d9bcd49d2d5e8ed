"""The model and tokenizer from the spec (precision, quantization, attention, LoRA,
activation checkpointing), the tiny offline model, `ft merge-lora` and `ft inference`."""
