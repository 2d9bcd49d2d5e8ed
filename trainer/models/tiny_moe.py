"""Tiny offline mixture-of-experts models of three families, for tests and the MoE bench.

Same tokenizer and save path as trainer/models/tiny.py (the tiny Llama), with a MoE body:
hidden 64, 2 decoder layers, 4 routed experts, top-2. Each family stores its experts the
way transformers 5 does, as fused 3-D parameters (`mlp.experts.gate_up_proj` /
`down_proj`) behind a router (`mlp.gate`); GLM-4-MoE adds a shared-expert MLP made of plain
Linear layers and a dense first layer, as the real GLM-4.5 has.

    python -m trainer.models.tiny_moe qwen3_moe DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainer.models.tiny import (
    BOS,
    EOS,
    MAX_POSITIONS,
    PAD,
    build_tiny_tokenizer,
    is_built,
    save_tiny,
    special_ids,
)

FAMILIES = ("qwen3_moe", "mixtral", "glm4_moe")

# What every family shares; each family's own names for the same sizes follow.
_COMMON = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "max_position_embeddings": MAX_POSITIONS,
           "tie_word_embeddings": False, "num_experts_per_tok": 2}
_FAMILY = {
    "qwen3_moe": {"num_experts": 4, "moe_intermediate_size": 32, "intermediate_size": 128,
                  "head_dim": 16, "norm_topk_prob": True},
    "mixtral": {"num_local_experts": 4, "intermediate_size": 32},
    # first_k_dense_replace=1: layer 0 is a dense MLP, layer 1 the MoE (as GLM-4.5's).
    "glm4_moe": {"n_routed_experts": 4, "n_shared_experts": 1, "moe_intermediate_size": 32,
                 "intermediate_size": 128, "first_k_dense_replace": 1, "n_group": 1,
                 "topk_group": 1, "head_dim": 16},
}


def moe_config(family: str, vocab_size: int, **overrides):
    """The transformers config of a tiny `family` model (`overrides` win)."""
    from transformers import AutoConfig

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny MoE family {family!r}; one of {FAMILIES}")
    return AutoConfig.for_model(family, vocab_size=vocab_size,
                                **{**_COMMON, **_FAMILY[family], **overrides})


def build_tiny_moe(out_dir: Path, family: str, *, seed: int = 0, **overrides) -> Path:
    """Write tokenizer + random tiny `family` MoE into `out_dir`; skip when already there.
    `overrides` go into the config (e.g. `output_router_logits=True`)."""
    out_dir = Path(out_dir)
    if is_built(out_dir):
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tiny_tokenizer()
    ids = special_ids(tokenizer)
    config = moe_config(family, len(tokenizer), bos_token_id=ids[BOS], eos_token_id=ids[EOS],
                        pad_token_id=ids[PAD], **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    _init_router(model)
    return save_tiny(model, tokenizer, out_dir)


def _init_router(model) -> None:
    """Some routers start at zeros (every expert ties, top-k picks by index): random ones
    spread tokens over the experts, so every expert's weights meet data in a short test."""
    import torch

    for name, param in model.named_parameters():
        if name.endswith(("mlp.gate.weight", "mlp.router.weight")):
            with torch.no_grad():
                param.normal_(0.0, 0.2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in FAMILIES:
        print(f"usage: python -m trainer.models.tiny_moe {{{','.join(FAMILIES)}}} DIR",
              file=sys.stderr)
        return 2
    build_tiny_moe(Path(args[1]), args[0])
    print(f"built: {args[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
