"""`type: chat_template` rows through a mistral-common tokenizer (`tokenizer_use_mistral_common`).

mistral-common's chat encoding is the template: its token ids are used as they are (the
control tokens cannot be recovered by tokenizing text). The masks follow ft's chat rules
(trainer/data/chat.py: `roles_to_train`, `train_on_eos`, contents located with markers) on
the text those ids decode to; a token is trained where its bytes overlap a trained span. As
in Axolotl, the token that closes a turn is EOS (`</s>`), the only one mistral-common emits.

A message's content may be a list of parts (`{type: text, text}`, `{type: thinking,
thinking}`: Magistral's reasoning, encoded between [THINK] and [/THINK]). Each part is
located on its own, so a trained role trains its thinking and its answer, and the markers
never cross a control token.
"""

from __future__ import annotations

from typing import Any

from trainer.data.chat import ChatFormatter
from trainer.data.encode import IGNORE
from trainer.models.mistral_tokenizer import decode_keeping_control_tokens, token_byte_pieces
from trainer.torch_free.training import DatasetSpec

_PART_TEXT = {"text": "text", "thinking": "thinking"}  # part type -> its text key


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
        spans = self.trained_spans(_parts(messages), text)
        return ids, _mask_by_byte_spans(ids, token_byte_pieces(self.tokenizer, ids), text,
                                        spans)

    def _ids(self, messages: list[dict[str, Any]]) -> list[int]:
        from mistral_common.exceptions import MistralCommonException

        try:
            return list(self.tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=False, **self.template_kwargs))
        except MistralCommonException as exc:  # its validation of the chat or the request
            raise ValueError(f"mistral-common cannot encode this chat: {exc}"
                             + (" (`chat_template_kwargs`)" if self.template_kwargs else "")
                             ) from None

    def _render(self, parts: list[dict[str, Any]]) -> str:
        """The text of a conversation given as its parts (what the span search marks)."""
        return decode_keeping_control_tokens(self.tokenizer, self._ids(_messages(parts)))


def _parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One pseudo-message per content part, remembering its message and part type."""
    out = []
    for index, message in enumerate(messages):
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content, "_of": index,
                        "_message": message})
            continue
        for part in content:
            key = _PART_TEXT.get(part.get("type"))
            if key is None:
                raise ValueError(f"message {index}: content part of type "
                                 f"{part.get('type')!r}; text rows take `text` and "
                                 "`thinking` parts")
            out.append({"role": message["role"], "content": part[key], "_of": index,
                        "_message": message, "_part": part, "_key": key})
    return out


def _messages(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation back from its (possibly marked) parts."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if "_part" not in part:
            out.append({**part["_message"], "content": part["content"]})
            continue
        if not out or out[-1].get("_of") != part["_of"]:
            out.append({**part["_message"], "content": [], "_of": part["_of"]})
        out[-1]["content"].append({**part["_part"], part["_key"]: part["content"]})
    return [{k: v for k, v in m.items() if k != "_of"} for m in out]


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
