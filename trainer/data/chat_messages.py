"""One dataset row -> the messages a chat template renders, plus each message's training flags.

Keys are renamed by `message_property_mappings` (or the legacy `message_field_role` /
`message_field_content`); the reasoning text is read from `field_thinking` and handed to the
template as `template_thinking_key` (both default to `reasoning_content`), or cut out of an
answer's content with `split_thinking` (split_thinking.py); contents given as lists of
parts are joined (content_parts.py); every other key a
message has (tool calls, names, ...) is passed through for the template to use. Empty
values are left out, as they are when a dataset's rows have keys only some messages use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trainer.data.content_parts import join_parts
from trainer.data.split_thinking import split_thinking
from trainer.torch_free.training import DatasetSpec

DEFAULT_ROLES = {
    "system": ["system"],
    "user": ["user", "human"],
    "assistant": ["assistant", "gpt", "model", "bot"],
    "tool": ["tool"],
}
DEFAULT_THINKING = "reasoning_content"


@dataclass(frozen=True)
class Turn:
    message: dict[str, Any]  # what the template sees
    training: Any = None  # the message's `message_field_training` value, if any
    detail: list[dict[str, Any]] | None = None  # its `message_field_training_detail`
    reasoning_detail: list[dict[str, Any]] | None = None  # from reasoning given as parts


class MessageReader:
    """Reads one row's turns (see the module docstring)."""

    def __init__(self, spec: DatasetSpec, system_message: str | None = None) -> None:
        self.field = spec.field_messages
        mapping = dict(spec.message_property_mappings or {})
        mapping.setdefault("role", spec.message_field_role or "role")
        mapping.setdefault("content", spec.message_field_content or "content")
        self.thinking_key = spec.template_thinking_key or DEFAULT_THINKING
        # Axolotl maps the reasoning field only when no property mapping is given; one the
        # spec names itself is always mapped (it would otherwise be silently unused).
        if spec.field_thinking or not spec.message_property_mappings:
            mapping.setdefault(self.thinking_key, spec.field_thinking or DEFAULT_THINKING)
        self.mapping = mapping
        self.training_field = spec.message_field_training
        self.detail_field = spec.message_field_training_detail
        self.split_thinking = bool(spec.split_thinking)
        self.role_of = role_lookup(spec.roles)
        self.system_message = system_message
        self.drop_system = bool(spec.drop_system_message)
        self._not_passed = {*mapping.values(), self.training_field, self.detail_field}

    def __call__(self, row: dict[str, Any]) -> list[Turn]:
        raw = row.get(self.field)
        if raw is None:
            raise ValueError(f"row has no `{self.field}` column (set `field_messages:`)")
        if isinstance(raw, str):
            raw = json.loads(raw)
        turns = [self._turn(message) for message in raw]
        turns = [t for t in turns if not (self.drop_system and t.message["role"] == "system")]
        if self.system_message and (not turns or turns[0].message["role"] != "system"):
            turns.insert(0, Turn({"role": "system", "content": self.system_message}))
        return turns

    def _turn(self, message: dict[str, Any]) -> Turn:
        msg = {key: message[src] for key, src in self.mapping.items()
               if message.get(src) is not None}
        for key, value in message.items():
            if key not in self._not_passed and value is not None:
                msg.setdefault(key, value)
        role = msg.get("role")
        msg["role"] = self.role_of.get(role, role)
        msg.setdefault("content", "")
        if self.split_thinking:
            split_thinking(msg, self.thinking_key)
        _parse_tool_arguments(msg)
        training = message.get(self.training_field) if self.training_field else None
        detail = message.get(self.detail_field) if self.detail_field else None
        if (parts := join_parts(msg["content"])) is not None:
            msg["content"] = parts[0]
            detail = parts[1] if parts[1] is not None else detail
        reasoning_detail = None
        if (parts := join_parts(msg.get(self.thinking_key))) is not None:
            msg[self.thinking_key], reasoning_detail = parts
        return Turn(msg, training, detail, reasoning_detail)


def _parse_tool_arguments(msg: dict[str, Any]) -> None:
    """Tool-call arguments stored as a JSON string become the object templates expect."""
    for call in msg.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                function["arguments"] = json.loads(function["arguments"])
            except json.JSONDecodeError as exc:
                raise ValueError(f"tool call {function.get('name')!r}: `arguments` is not "
                                 f"valid JSON ({exc})") from None


def role_lookup(roles: dict[str, list[str]] | None) -> dict[str, str]:
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
