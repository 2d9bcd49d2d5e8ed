"""A tiny offline Llama-architecture model and BPE tokenizer, built from text in the repo.

No machine here reaches a model hub, so tests and `examples/tiny` train their own tokenizer on
the tiny example's `corpus.txt` (plus its data) and build a randomly initialised
2-layer `LlamaForCausalLM`; both are saved with `save_pretrained` and loaded back through
the same `from_pretrained` path a real model takes.

The tokenizer deliberately has the traps real ones have: it adds BOS by default *and* its chat
template also emits BOS (so a naive pipeline doubles it), pad is distinct from EOS, and the
chat turns end with `<|im_end|>`, not with EOS.

    python -m trainer.models.tiny examples/tiny/model

The example's files come from the checkout or, installed, from ft's package data (`ft init
--example tiny DIR` writes them and builds the model).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from trainer.torch_free.example_files import example_dir

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [UNK, BOS, EOS, PAD, IM_START, IM_END]

# ChatML preceded by BOS: the tokenizer's own template (`chat_template: tokenizer_default`).
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MAX_POSITIONS = 2048


def _training_texts() -> Iterator[str]:
    """The shipped corpus plus every string found in the tiny example data."""
    tiny_dir = example_dir("tiny")
    yield from (tiny_dir / "corpus.txt").read_text(encoding="utf-8").splitlines()
    for path in sorted((tiny_dir / "data").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield from _strings(json.loads(line))
    # Prompt scaffolding the data formats add, so it tokenizes into few tokens.
    yield "### Instruction:\n### Input:\n### Response:\nuser\nassistant\nsystem\n"


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def build_tiny_tokenizer(vocab_size: int = 512):
    """Train a byte-level BPE tokenizer and wrap it as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_training_texts(), trainer)
    # Like Llama: plain encoding adds BOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tok.token_to_id(BOS))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=[IM_START, IM_END], model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: Path, *, vocab_size: int = 512, seed: int = 0) -> Path:
    """Write tokenizer + random 2-layer Llama into `out_dir`; skip when already there."""
    out_dir = Path(out_dir)
    if is_built(out_dir):
        return out_dir
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(vocab_size)
    ids = special_ids(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=False,
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD],
    )
    torch.manual_seed(seed)
    return save_tiny(LlamaForCausalLM(config), tokenizer, out_dir)


def special_ids(tokenizer) -> dict[str, int]:
    return {name: tokenizer.convert_tokens_to_ids(name) for name in (BOS, EOS, PAD, IM_END)}


def save_tiny(model, tokenizer, out_dir: Path) -> Path:
    """Save a freshly built tiny model with its tokenizer into `out_dir`, atomically."""
    from transformers import GenerationConfig

    ids = special_ids(tokenizer)
    # Generation stops at the end of a chat turn as well as at EOS.
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=[ids[EOS], ids[IM_END]], pad_token_id=ids[PAD],
    )
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    _replace_dir(tmp, out_dir)
    return out_dir


def is_built(out_dir: Path) -> bool:
    return all((Path(out_dir) / name).is_file()
               for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
                            "model.safetensors"))


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished build into place, config.json last (its presence marks completion).

    An existing `out_dir` keeps whatever else it holds: files are moved in one by one.
    """
    if not out_dir.exists():
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out_dir)
        return
    names = sorted(p.name for p in tmp.iterdir())
    names.sort(key=lambda name: name == "config.json")
    for name in names:
        os.replace(tmp / name, out_dir / name)
    tmp.rmdir()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trainer.models.tiny DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    existed = is_built(out)
    from trainer.distributed.deepspeed_config import keep_deepspeed_unloaded

    keep_deepspeed_unloaded()  # saving would import it (and its banner) for nothing
    build_tiny_model(out)
    print(f"{'already built' if existed else 'built'}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
