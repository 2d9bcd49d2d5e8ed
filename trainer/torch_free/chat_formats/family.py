"""What ft knows about one named chat template: its jinja (written for ft from the
family's published turn layout) and the tokens the masks and the tests need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    jinja: str
    # The tokens that close a turn (single tokens of the model's vocabulary); () when an
    # answer ends with the tokenizer's EOS.
    closing: tuple[str, ...]
    # One line for docs/chat-templates.md: the models it is for and what it writes.
    renders: str
    # The family's own marker tokens (role headers, separators): single tokens in its
    # models' vocabularies.
    markers: tuple[str, ...] = ()
    tools: bool = False  # renders `tools` and assistant `tool_calls` / tool turns
    thinking: bool = False  # renders assistant `reasoning_content`
