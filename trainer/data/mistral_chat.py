"""`type: chat_template` rows through a mistral-common tokenizer (`tokenizer_use_mistral_common`).

mistral-common's chat encoding is the template: its token ids are used as they are (the
control tokens cannot be recovered by tokenizing text). The masks follow ft's chat rules
(trainer/data/chat.py: `roles_to_train`, `train_on_eos`, content located with markers) on
the text those ids decode to; a token is trained where its bytes overlap a trained span. As
in Axolotl, the token that closes a turn is EOS (`</s>`), the only one mistral-common emits.
"""

from __future__ import annotations

from typing import Any

from trainer.data.chat import ChatFormatter
from trainer.data.encode import IGNORE
from trainer.models.mistral_tokenizer import decode_keeping_control_tokens, token_byte_pieces
from trainer.torch_free.training import DatasetSpec


class MistralChatEncoder(ChatFormatter):
    """One row -> (input_ids, labels) with mistral-common's own chat encoding."""

    def __init__(self, spec: DatasetSpec, tokenizer: Any, *, train_on_inputs: bool,
                 system_message: str | None = None,
                 template_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(spec, tokenizer, "", train_on_inputs=train_on_inputs,
                         system_message=system_message, closing_tokens=(),
                         template_kwargs=template_kwargs)

    def encode(self, row: dict[str, Any]) -> tuple[list[int], list[int]]:
        messages = self.messages(row)
        ids = self._ids(messages)
        if self.train_all:
            return ids, list(ids)
        text = decode_keeping_control_tokens(self.tokenizer, ids)
        spans = self.trained_spans(messages, text)
        return ids, _mask_by_byte_spans(ids, token_byte_pieces(self.tokenizer, ids), text,
                                        spans)

    def _ids(self, messages: list[dict[str, Any]]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=False, **self.template_kwargs))

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return decode_keeping_control_tokens(self.tokenizer, self._ids(messages))


def _mask_by_byte_spans(ids: list[int], pieces: list[bytes], text: str,
                        spans: list[tuple[int, int]]) -> list[int]:
    """Label = id where the token's bytes overlap a trained character span (as bytes)."""
    byte_spans = [(len(text[:a].encode()), len(text[:b].encode())) for a, b in spans if b > a]
    labels, pos = [], 0
    for tok, piece in zip(ids, pieces, strict=True):
        start, pos = pos, pos + len(piece)
        trained = any(start < b and pos > a for a, b in byte_spans)
        labels.append(tok if trained else IGNORE)
    return labels
