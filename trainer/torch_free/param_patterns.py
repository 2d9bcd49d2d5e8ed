"""`unfrozen_parameters` patterns in Axolotl's syntax, parsed without torch so that `ft
validate` reports a bad one (trainer/models/unfrozen.py applies them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainer.torch_free.errors import UserError

PEFT_PREFIX = "base_model.model."
_RANGE = re.compile(r"^(.+)\[([0-9]*)(?::([0-9]*))?\]$")


@dataclass(frozen=True)
class NamePattern:
    """One `unfrozen_parameters` entry: the name regex and the optional row range."""

    text: str
    regex: re.Pattern
    start: int | None = None
    end: int | None = None  # None with a start: to the last row

    @classmethod
    def parse(cls, text: str) -> NamePattern:
        found = _RANGE.match(text)
        name, start, end = text, None, None
        if found:
            name, first, last = found.groups()
            if last is None and first.isdecimal():  # `[i]`: the single row i
                start, end = int(first), int(first) + 1
            else:
                start, end = int(first or 0), int(last) if last else None
                if end is not None and start >= end:
                    raise UserError(f"`unfrozen_parameters`: {text!r} has an empty row range; "
                                    "the end must be greater than the start")
        try:
            regex = re.compile(re.sub(r"\.(?!\+)", r"\\.", name))
        except re.error as exc:
            raise UserError(f"`unfrozen_parameters`: {text!r} is not a valid regex ({exc})") \
                from None
        return cls(text, regex, start, end)

    def matches(self, names: tuple[str, ...]) -> bool:
        return any(self.regex.match(name) for name in names)

    @property
    def rows(self) -> tuple[int, int | None] | None:
        return None if self.start is None else (self.start, self.end)


def spellings(name: str, text_only: bool) -> tuple[str, ...]:
    """The names a parameter answers to: as given, without peft's prefix and, in a
    text-only model, as the multimodal class of its family spells it."""
    base = name.removeprefix(PEFT_PREFIX)
    names = (name, base)
    if text_only and base.startswith("model."):
        names += ("model.language_model." + base.removeprefix("model."),)
    return names
