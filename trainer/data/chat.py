"""`type: chat_template`: OpenAI-style messages rendered by a jinja chat template.

The trained tokens follow Axolotl's rules and are found from the template's own output,
never from its layout, so they stay right for any template:

- A turn trains when its message says so (`message_field_training`), else when it has a
  character detail (`message_field_training_detail`, or content parts marked `train`; then
  only the characters it trains), else when its role is in `roles_to_train` (default:
  assistant) or `train_on_inputs` is on.
- What trains of a turn is the text that changes when that turn alone is rendered with a
  stand-in for its content (turn_spans.py): the content, and with it the reasoning text and
  tool calls where the template writes them; never the role headers between turns.
- The turn-closing tokens train per `train_on_eos` / `train_on_eot` / `eot_tokens`
  (turn_ends.py): by default only EOS, after each trained turn.

Rows keep exactly the tokens of the rendered text: no BOS is added (the template writes one
where the model wants it), as in Axolotl.
"""

from __future__ import annotations

from typing import Any

from trainer.data.chat_messages import MessageReader, Turn
from trainer.data.encode import RowText, Span
from trainer.data.train_detail import detail_spans
from trainer.data.turn_ends import closing_rule
from trainer.data.turn_spans import turn_span
from trainer.torch_free.training import DatasetSpec


class ChatFormatter:
    """Turns one row's messages into text, trained spans and turn ends (module docstring)."""

    def __init__(self, spec: DatasetSpec, tokenizer: Any, template: str, *,
                 train_on_inputs: bool, system_message: str | None = None,
                 eot_tokens: list[str] | None = None,
                 template_kwargs: dict[str, Any] | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.reader = MessageReader(spec, system_message)
        role_of = self.reader.role_of
        # Template role names; a dataset role name (e.g. `gpt`) is accepted too.
        self.roles_to_train = {role_of.get(r, r) for r in (
            ["assistant"] if spec.roles_to_train is None else spec.roles_to_train)}
        self.train_on_inputs = train_on_inputs
        self.detail_key = spec.message_field_training_detail or "message_field_training_detail"
        self.template_kwargs = template_kwargs or {}
        self.closing = closing_rule(tokenizer, template, eot_tokens=eot_tokens,
                                    train_on_eos=spec.train_on_eos,
                                    train_on_eot=spec.train_on_eot)
        # Axolotl skips a leading system turn of Mistral tokenizers (their templates fold
        # it into the first user turn); it matters only when system turns would train.
        self.skip_leading_system = "mistral" in str(
            getattr(tokenizer, "name_or_path", "")).lower()

    def __call__(self, row: dict[str, Any]) -> RowText:
        turns = self.reader(row)
        messages = [t.message for t in turns]
        text = self._render(messages)
        spans: list[Span] = []
        ends: list[tuple[int, bool]] = []
        for index, turn in enumerate(turns):
            trained = self._trains(turn)
            if not trained and not self.closing.looks_at_untrained_turns:
                continue
            span = self._locate(messages, index, turn, text)
            if span is None:
                continue
            if trained:
                spans += self._trained_part(turn, span)
                spans += self._trained_reasoning(messages, index, turn, text)
            ends.append((span[1], trained))
        return RowText(text, spans, add_bos=False, closing=self.closing, turn_ends=ends)

    def _trains(self, turn: Turn) -> bool:
        if turn.training is not None:
            return bool(turn.training)
        if turn.detail is not None or turn.reasoning_detail is not None:
            return bool(turn.detail) or bool(turn.reasoning_detail)
        return self.train_on_inputs or turn.message["role"] in self.roles_to_train

    def _locate(self, messages: list[dict[str, Any]], index: int, turn: Turn,
                text: str) -> tuple[int, int] | None:
        if index == 0 and self.skip_leading_system and turn.message["role"] == "system":
            return None
        thinking = self.reader.thinking_key
        # With a character detail the span must be the content alone: keep the reasoning.
        has_detail = turn.detail or turn.reasoning_detail
        keep = (thinking,) if has_detail and turn.message.get(thinking) is not None else ()
        return turn_span(self._render, messages, index, text, keep=keep)

    def _trained_part(self, turn: Turn, span: tuple[int, int]) -> list[Span]:
        """The content's trained characters: all of the turn's span, or its detail. (When
        only the reasoning has a detail, Axolotl trains no content: that is kept.)"""
        if turn.detail:
            return self._detail(turn.message["content"], turn.detail, span[0])
        return [] if turn.reasoning_detail else [span]

    def _trained_reasoning(self, messages: list[dict[str, Any]], index: int, turn: Turn,
                           text: str) -> list[Span]:
        """The reasoning's trained characters when it was given as marked parts."""
        thinking = self.reader.thinking_key
        reasoning = turn.message.get(thinking)
        if not turn.reasoning_detail or reasoning is None:
            return []
        span = turn_span(self._render, messages, index, text, keep=("content",),
                         stand_in_for=thinking)
        if span is None:
            return []
        return self._detail(reasoning, turn.reasoning_detail, span[0])

    def _detail(self, value: Any, detail: list[dict[str, Any]], offset: int) -> list[Span]:
        pieces = detail_spans(self.tokenizer, value, detail, self.detail_key)
        return [(offset + start, offset + end) for start, end in pieces]

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=False,
            **self.template_kwargs)
