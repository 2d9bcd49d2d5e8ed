"""Fused kernels from Axolotl's keys: Liger, cut-cross-entropy, the lean LoRA forward."""
