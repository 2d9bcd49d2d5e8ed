"""`type: chat_template`: OpenAI-style messages rendered by a jinja chat template.

Masks come from the template's own output, not from guessing its layout: the conversation is
rendered once as is and once with each message content replaced by a unique marker. The
marker positions give each content's exact character span in the real text; the turn's
end-of-turn token is the first special token after the content (`<|im_end|>`, `<|eot_id|>`,
EOS, ...; `eot_tokens` narrows the list). This works for any template that copies contents
verbatim (or trimmed). As in Axolotl, `train_on_eos` decides for the EOS token and
`train_on_eot` (default: the same) for the other end-of-turn tokens.
"""

from __future__ import annotations

import re
from typing import Any

from trainer.data.encode import RowText, Span
from trainer.torch_free.training import DatasetSpec

DEFAULT_ROLES = {
    "system": ["system"],
    "user": ["user", "human"],
    "assistant": ["assistant", "gpt", "model", "bot"],
    "tool": ["tool"],
}
_MARK = re.compile("\ue000(\\d+)\ue001")


class ChatFormatter:
    """Turns one row's messages into text + trained spans (see module docstring)."""

    def __init__(self, spec: DatasetSpec, tokenizer: Any, template: str, *,
                 train_on_inputs: bool, system_message: str | None = None,
                 eot_tokens: list[str] | None = None,
                 closing_tokens: tuple[str, ...] | None = None,
                 template_kwargs: dict[str, Any] | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.field = spec.field_messages
        mapping = dict(spec.message_property_mappings or {})
        mapping.setdefault("role", spec.message_field_role or "role")
        mapping.setdefault("content", spec.message_field_content or "content")
        self.properties = mapping
        self.role_of = _role_lookup(spec.roles)
        # Template role names; a dataset role name (e.g. `gpt`) is accepted too.
        self.roles_to_train = {self.role_of.get(r, r) for r in spec.roles_to_train or
                               ["assistant"]}
        self.train_on_eos = spec.train_on_eos or "turn"
        self.train_on_eot = spec.train_on_eot or self.train_on_eos
        self.train_all = train_on_inputs
        self.system_message = system_message
        self.drop_system = bool(spec.drop_system_message)
        self.template_kwargs = template_kwargs or {}
        self.eos = tokenizer.eos_token
        self.eot_strings = _turn_closers(tokenizer, eot_tokens, closing_tokens)

    def __call__(self, row: dict[str, Any]) -> RowText:
        messages = self.messages(row)
        text = self._render(messages)
        if self.train_all:
            return RowText(text, train_all=True, as_rendered=True)
        return RowText(text, self.trained_spans(messages, text), as_rendered=True)

    def messages(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        raw = row.get(self.field)
        if raw is None:
            raise ValueError(f"row has no `{self.field}` column (set `field_messages:`)")
        out = []
        for message in raw:
            msg = {key: message.get(src) for key, src in self.properties.items()}
            msg["role"] = self.role_of.get(msg["role"], msg["role"])
            msg["content"] = msg["content"] or ""
            if not (self.drop_system and msg["role"] == "system"):
                out.append(msg)
        if self.system_message and (not out or out[0]["role"] != "system"):
            out.insert(0, {"role": "system", "content": self.system_message})
        return out

    def trained_spans(self, messages: list[dict[str, Any]], text: str) -> list[Span]:
        spans = content_spans(self._render, messages, text)
        order = sorted(spans)  # (start, end, index) in text order
        trained: list[Span] = []
        last_index = len(messages) - 1
        for k, (start, end, i) in enumerate(order):
            next_start = order[k + 1][0] if k + 1 < len(order) else len(text)
            closing = self._end_of_turn(text, end, next_start)
            role_trained = messages[i]["role"] in self.roles_to_train
            if role_trained:
                trained.append((start, end))
            if closing is not None:
                token, eot_end = closing
                mode = self.train_on_eos if token == self.eos else self.train_on_eot
                if _train_closing(mode, role_trained, i == last_index):
                    trained.append((end, eot_end))
        return trained

    def _end_of_turn(self, text: str, start: int, stop: int) -> tuple[str, int] | None:
        """(token, end offset) of the special token closing the turn that ends at `start`.

        It must follow the content with at most whitespace in between: a special token further
        on opens the next turn rather than closing this one.
        """
        best: tuple[int, str] | None = None
        for token in self.eot_strings:
            pos = text.find(token, start, stop)
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, token)
        if best is None or text[start:best[0]].strip():
            return None
        return best[1], best[0] + len(best[1])

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=False,
            **self.template_kwargs)


def _train_closing(mode: str, role_trained: bool, is_last: bool) -> bool:
    return (mode == "all" or (mode == "turn" and role_trained)
            or (mode == "last" and role_trained and is_last))


def content_spans(render: Any, messages: list[dict[str, Any]],
                  text: str) -> list[tuple[int, int, int]]:
    """(start, end, message index) of every rendered message content inside `text`."""
    marked = [dict(m, content=f"\ue000{i}\ue001") for i, m in enumerate(messages)]
    pieces = _MARK.split(render(marked))
    for variant in (lambda s: s, str.strip):
        out: list[tuple[int, int, int]] = []
        pos = 0
        rebuilt = pieces[0]
        for k in range(1, len(pieces), 2):
            index = int(pieces[k])
            content = variant(messages[index]["content"])
            pos = len(rebuilt)
            rebuilt += content + pieces[k + 1]
            out.append((pos, pos + len(content), index))
        if rebuilt == text:
            return out
    raise ValueError("the chat template changes message contents (beyond trimming), so the "
                     "trained spans cannot be located; use a template that copies them")


def _role_lookup(roles: dict[str, list[str]] | None) -> dict[str, str]:
    """Dataset role name -> template role; the spec's `roles:` overrides the defaults."""
    table = {**DEFAULT_ROLES, **(roles or {})}
    lookup: dict[str, str] = {}
    for template_role, names in table.items():
        for name in names:
            lookup.setdefault(name, template_role)
    for template_role, names in (roles or {}).items():
        for name in names:
            lookup[name] = template_role
    return lookup


def _turn_closers(tokenizer: Any, eot_tokens: list[str] | None,
                  closing_tokens: tuple[str, ...] | None) -> list[str]:
    """`eot_tokens` when the spec gives them; else the template's own closers (ft's named
    templates know theirs) plus EOS; else every special token of the tokenizer."""
    if eot_tokens:
        return _checked_eot_tokens(tokenizer, eot_tokens)
    if closing_tokens is not None:
        return sorted({*closing_tokens, tokenizer.eos_token} - {None})
    return _end_of_turn_strings(tokenizer)


def _checked_eot_tokens(tokenizer: Any, tokens: list[str]) -> list[str]:
    """`eot_tokens` must each be one token of the vocabulary: a string split into pieces
    cannot be found (and trained) as one turn-closing token."""
    for token in tokens:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"`eot_tokens`: {token!r} is not one token of this tokenizer "
                             f"(it encodes to {len(ids)}); add it with `tokens:` or "
                             "`special_tokens:`, or remove it")
    return list(tokens)


def _end_of_turn_strings(tokenizer: Any) -> list[str]:
    """Special tokens a template can close a turn with: all of them but BOS/pad/unk."""
    skip = {tokenizer.bos_token, tokenizer.pad_token, tokenizer.unk_token}
    found = {tok.content for tok in tokenizer.added_tokens_decoder.values() if tok.special}
    if tokenizer.eos_token:
        found.add(tokenizer.eos_token)
    return sorted(t for t in found - skip if t)
