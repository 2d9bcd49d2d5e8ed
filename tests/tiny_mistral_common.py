"""A tiny Mistral model with a tekken.json tokenizer (mistral-common's format), built offline.

tekken.json, as mistral-common reads it: `vocab` (rank, base64 bytes, text) of the ordinary
tokens, ranked so every merged token comes after its parts (tiktoken's BPE ranks), the 256
single bytes first; `special_tokens` (rank, text, is_control), which take the first ids;
`config` (the pre-tokenizer pattern, vocabulary sizes, tokenizer version). The merges are
trained here with `tokenizers` on the tiny example's text; version v13 is Magistral's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

# Tekken's pre-tokenizer pattern (letters with their case, digits one by one, punctuation).
PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
           r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
           r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
NUM_SPECIAL = 64


def _byte_level_alphabet() -> dict[str, int]:
    """tokenizers' byte-level character -> the byte it stands for (GPT-2's mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def _merged_tokens(vocab_size: int) -> list[bytes]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from trainer.models.tiny import _training_texts

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_texts(), trainer)
    to_byte = _byte_level_alphabet()
    ranked = sorted(tok.get_vocab().items(), key=lambda item: item[1])  # merge order
    return [bytes(to_byte[c] for c in text) for text, _ in ranked if len(text) > 1]


def write_tekken(path: Path, vocab_size: int = 700, version: str = "v13") -> Path:
    from mistral_common.tokens.tokenizers.base import SpecialTokens

    pieces = [bytes([b]) for b in range(256)] + _merged_tokens(vocab_size)
    vocab = []
    for rank, piece in enumerate(pieces):
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        vocab.append({"rank": rank, "token_bytes": base64.b64encode(piece).decode(),
                      "token_str": text})
    specials = [{"rank": i, "token_str": tok.value, "is_control": True}
                for i, tok in enumerate(SpecialTokens)]
    config = {"pattern": PATTERN, "num_vocab_tokens": len(pieces),
              "default_vocab_size": len(pieces) + NUM_SPECIAL,
              "default_num_special_tokens": NUM_SPECIAL, "version": version}
    path.write_text(json.dumps({"config": config, "vocab": vocab, "special_tokens": specials}))
    return path


def build_tiny_mistral(out_dir: Path) -> Path:
    """tekken.json + a random 2-layer MistralForCausalLM sized to its vocabulary."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM
    from transformers.tokenization_mistral_common import MistralCommonBackend

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tekken(out_dir / "tekken.json")
    tokenizer = MistralCommonBackend.from_pretrained(out_dir)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=2048, tie_word_embeddings=False,
                           bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir
