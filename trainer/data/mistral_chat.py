"""`type: chat_template` rows through a mistral-common tokenizer (`tokenizer_use_mistral_common`).

mistral-common's chat encoding is the template: its token ids are used as they are (the
control tokens cannot be recovered by tokenizing text). Everything else is ft's chat path
(chat.py, Axolotl's rules): the turns are read by MessageReader, a turn's trained text is
what changes when it alone is rendered with a stand-in (turn_spans.py), on the text the ids
decode to, and the closing tokens train per turn_ends.py. As in Axolotl, the only closer
mistral-common writes is EOS (`</s>`) after each assistant turn, governed by `train_on_eos`.
A token is trained where its bytes overlap a trained character span.

A message's content may be a list of parts (`{type: text, text}`, `{type: thinking,
thinking}`: Magistral's reasoning, encoded between [THINK] and [/THINK]). The thinking parts
become the message's reasoning text (`template_thinking_key`) and are encoded back as the
leading thinking part, so a trained turn trains its [THINK] block with its answer (as a
template that writes the reasoning does); parts marked `train: false` stay untrained.
"""

from __future__ import annotations

from typing import Any

from trainer.data.chat import ChatFormatter
from trainer.data.chat_messages import MessageReader
from trainer.data.encode import mask_by_spans
from trainer.models.mistral_tokenizer import decode_keeping_control_tokens, token_byte_pieces
from trainer.torch_free.training import DatasetSpec


class MistralChatEncoder(ChatFormatter):
    """One row -> (input_ids, labels) with mistral-common's own chat encoding."""

    def __init__(self, spec: DatasetSpec, tokenizer: Any, *, train_on_inputs: bool,
                 system_message: str | None = None,
                 template_kwargs: dict[str, Any] | None = None) -> None:
        # The "template" closing_rule reads is what mistral-common writes between turns:
        # EOS and no other closer (`eot_tokens` is refused with it at validation).
        super().__init__(spec, tokenizer, tokenizer.eos_token,
                         train_on_inputs=train_on_inputs, system_message=system_message,
                         template_kwargs=template_kwargs)
        self.reader = ThinkingPartsReader(spec, system_message)
        # Axolotl skips a leading system turn for tokenizers named Mistral (its tokenizer is
        # named by `tokenizer_config`); every mistral-common tokenizer is one, whatever the
        # local directory is called (MistralCommonBackend's own name_or_path is empty).
        self.skip_leading_system = True
        self._ids_of: dict[str, list[int]] = {}

    def encode(self, row: dict[str, Any]) -> tuple[list[int], list[int]]:
        self._ids_of = {}  # the ids of each text rendered for this row
        try:
            row_text = self(row)
            ids = self._ids_of[row_text.text]
        finally:
            self._ids_of = {}
        offsets = char_offsets(token_byte_pieces(self.tokenizer, ids), row_text.text)
        labels = mask_by_spans(ids, offsets, row_text.spans)
        self.closing.mark(ids, offsets, labels, row_text.turn_ends)
        return ids, labels

    def _render(self, messages: list[dict[str, Any]]) -> str:
        """The text mistral-common's ids for `messages` decode to (control tokens kept)."""
        ids = self._ids([self._as_parts(m) for m in messages])
        text = decode_keeping_control_tokens(self.tokenizer, ids)
        self._ids_of[text] = ids
        return text

    def _as_parts(self, message: dict[str, Any]) -> dict[str, Any]:
        """A message with reasoning text -> mistral-common's thinking and text parts."""
        thinking = self.reader.thinking_key
        if message.get(thinking) is None:
            return message
        out = {k: v for k, v in message.items() if k != thinking}
        out["content"] = [{"type": "thinking", "thinking": message[thinking]},
                          *([{"type": "text", "text": message["content"]}]
                            if message.get("content") else [])]
        return out

    def _ids(self, messages: list[dict[str, Any]]) -> list[int]:
        from mistral_common.exceptions import MistralCommonException

        try:
            return list(self.tokenizer.apply_chat_template(
                messages, tokenize=True, return_dict=False, **self.template_kwargs))
        except MistralCommonException as exc:  # its validation of the chat or the request
            raise ValueError(f"mistral-common cannot encode this chat: {exc}"
                             + (" (`chat_template_kwargs`)" if self.template_kwargs else "")
                             ) from None


class ThinkingPartsReader(MessageReader):
    """MessageReader that first moves a message's `thinking` parts to its reasoning field
    (as a list of parts, so their `train`/`weight` marks become a reasoning detail)."""

    def _turn(self, message: dict[str, Any]):  # noqa: ANN202 - MessageReader's Turn
        content_key = self.mapping["content"]
        content = message.get(content_key)
        if not isinstance(content, list):
            return super()._turn(message)
        texts, thoughts = [], []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "thinking"):
                raise ValueError(f"content part of type {kind!r}; text rows take `text` and "
                                 "`thinking` parts")
            if kind == "thinking":
                if texts:
                    raise ValueError("a `thinking` part after a `text` part: Magistral's "
                                     "reasoning comes before its answer")
                thoughts.append({**part, "text": part.get("thinking") or ""})
            else:
                texts.append(part)
        if not thoughts:
            return super()._turn(message)
        source = self.mapping.get(self.thinking_key)
        if source is None:
            raise ValueError("a message has `thinking` parts but `message_property_mappings` "
                             "maps no reasoning field; set `field_thinking`")
        if message.get(source) is not None:
            raise ValueError(f"a message has both `thinking` parts and a `{source}` field; "
                             "give its reasoning one way")
        return super()._turn({**message, content_key: texts, source: thoughts})


def char_offsets(pieces: list[bytes], text: str) -> list[tuple[int, int]]:
    """Each token's (start, end) characters in `text` (its byte pieces joined, decoded). A
    token holding part of a multi-byte character covers that whole character."""
    char_at: list[int] = []  # byte position -> index of the character it belongs to
    for index, char in enumerate(text):
        char_at += [index] * len(char.encode())
    char_at.append(len(text))
    offsets, pos = [], 0
    for piece in pieces:
        start, pos = pos, pos + len(piece)
        offsets.append((char_at[start], char_at[pos - 1] + 1 if pos > start else char_at[start]))
    return offsets
