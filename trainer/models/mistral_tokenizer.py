"""`tokenizer_use_mistral_common: true`: Mistral's own tokenizer library instead of a
Hugging Face tokenizer.json.

Magistral, Ministral, Devstral and Mistral-4 ship `tekken.json` and are trained with the chat
encoding of the `mistral-common` package; its control tokens ([INST], [SYSTEM_PROMPT],
[THINK], ...) are never produced by tokenizing text, only by that encoding. transformers wraps
the package as `MistralCommonBackend`; ft loads it in the fine-tuning validation mode (a chat
ends with the assistant's answer) and pads on the right like every ft tokenizer.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from trainer.models.source import tokenizer_source_kwargs
from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

_KEY = "`tokenizer_use_mistral_common: true`"


def is_mistral_common(tokenizer: Any) -> bool:
    return type(tokenizer).__name__ == "MistralCommonBackend"


def load_mistral_common_tokenizer(cfg: TrainingConfig, directory: str | None = None,
                                  mode: str = "finetuning") -> Any:
    """The spec's tokenizer (or the copy saved in `directory`: a training output). Mode
    `finetuning` encodes chats that end with the answer; `test` (inference) ones that end
    with the user's turn."""
    if importlib.util.find_spec("mistral_common") is None:
        raise UserError(f"{_KEY} needs the `mistral-common` package, which ft's [train] extra "
                        "installs: pip install 'ft-finetune[train]'")
    from transformers.tokenization_mistral_common import MistralCommonBackend

    source, kwargs = tokenizer_source_kwargs(cfg)
    if directory is not None:
        source, kwargs = directory, {}
    if os.path.isdir(source) and not _has_tokenizer_file(source):
        raise UserError(f"{_KEY}: {source} has no mistral-common tokenizer file (tekken.json "
                        "or tokenizer.model.v*); point `tokenizer_config` at the directory "
                        "that has it, or remove the key to use tokenizer.json")
    passed = {k: v for k, v in kwargs.items() if k in ("revision", "trust_remote_code")}
    tokenizer = MistralCommonBackend.from_pretrained(source, mode=mode, **passed)
    tokenizer.padding_side = "right"
    if _tekken(tokenizer) is None:
        raise UserError(f"{_KEY}: {source}'s tokenizer is a SentencePiece one; ft masks chats "
                        "through tekken.json tokenizers only (every Magistral, Ministral, "
                        "Devstral and Mistral-4 model has one); remove the key to use the "
                        "model's tokenizer.json")
    return tokenizer


def _has_tokenizer_file(directory: str) -> bool:
    from mistral_common.tokens.tokenizers.utils import get_one_valid_tokenizer_file

    try:
        get_one_valid_tokenizer_file(os.listdir(directory))
    except ValueError:
        return False
    return True


def _tekken(tokenizer: Any) -> Any | None:
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    inner = tokenizer.tokenizer.instruct_tokenizer.tokenizer
    return inner if isinstance(inner, Tekkenizer) else None


def token_byte_pieces(tokenizer: Any, ids: list[int]) -> list[bytes]:
    """Each token's bytes in the decoded text (control tokens as their names): the text
    mistral-common decodes with its special tokens kept is these pieces joined."""
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

    tekken = _tekken(tokenizer)
    return [tekken.id_to_byte_piece(i, SpecialTokenPolicy.KEEP) for i in ids]


def decode_keeping_control_tokens(tokenizer: Any, ids: list[int]) -> str:
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

    return _tekken(tokenizer).decode(ids, special_token_policy=SpecialTokenPolicy.KEEP)
