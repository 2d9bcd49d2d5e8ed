"""Which turn-closing tokens train: `train_on_eos`, `train_on_eot` and `eot_tokens`, as Axolotl.

Two kinds of closing token are looked for after each turn: EOS, governed by `train_on_eos`,
and the end-of-turn tokens, governed by `train_on_eot` (default: as `train_on_eos`). The
end-of-turn tokens are `eot_tokens` when set (those the template writes), else EOS alone; so
by default a template that closes turns with its own token (`<|im_end|>` on a tokenizer
whose EOS is `<|endoftext|>`, `<|eot_id|>` on a base Llama) trains no closing token at all.
Set `eot_tokens` to train it.

A closing token belongs to a turn when it is the first such token at or after the turn's end
and at most 3 tokens after it (templates put a newline or a header in between). Modes:
`turn` trains it after each trained turn, `all` after every turn, `last` only the last one
found, `none` never.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ft.data")

MODES = ("turn", "last", "all", "none")
MAX_GAP = 3  # tokens allowed between a turn's end and its closing token


@dataclass(frozen=True)
class ClosingRule:
    """The closing tokens of one dataset and which of them train."""

    eot_ids: frozenset[int]
    eos_id: int | None
    train_on_eot: str
    train_on_eos: str

    @property
    def looks_at_untrained_turns(self) -> bool:
        """`all` trains the closers of untrained turns too, so those turns must be located."""
        return "all" in (self.train_on_eot, self.train_on_eos)

    def mark(self, ids: list[int], offsets: list[tuple[int, int]], labels: list[int],
             turn_ends: list[tuple[int, bool]]) -> None:
        """Set the labels of the closing tokens; `turn_ends`: (end character of the turn,
        whether the turn trains) for each located turn, in order."""
        starts = [start for start, _ in offsets]
        kinds = ((self.eot_ids, self.train_on_eot),
                 (frozenset() if self.eos_id is None else frozenset({self.eos_id}),
                  self.train_on_eos))
        for token_ids, mode in kinds:
            last = None
            for char_end, trained in turn_ends:
                end = bisect_left(starts, char_end)
                found = _first_of(ids, token_ids, end)
                if found is None:
                    continue
                last = found
                if mode == "all" or (mode == "turn" and trained):
                    labels[found] = ids[found]
            if mode == "last" and last is not None:
                labels[last] = ids[last]


def _first_of(ids: list[int], wanted: frozenset[int], start: int) -> int | None:
    """The first wanted token at or after `start` when it is at most MAX_GAP after it (one
    further on is not this turn's, so the search stops there)."""
    for i in range(start, min(start + MAX_GAP + 1, len(ids))):
        if ids[i] in wanted:
            return i
    return None


def closing_rule(tokenizer: Any, template: str, *, eot_tokens: list[str] | None,
                 train_on_eos: str | None, train_on_eot: str | None) -> ClosingRule:
    """The rule for one dataset; bad `eot_tokens` are an error naming the key."""
    on_eos = train_on_eos or "turn"
    on_eot = train_on_eot or on_eos
    eos = tokenizer.eos_token
    if eot_tokens is None or eot_tokens == [eos]:  # EOS alone: nothing to check or drop
        if eos is not None and eos not in template and "eos_token" not in template:
            log.warning("the chat template never writes EOS (%s), so no turn-closing token "
                        "is trained; set `eot_tokens` to the token that ends its turns", eos)
        tokens = [eos] if eos is not None else []
    else:
        tokens = _written_eot_tokens(tokenizer, template, eot_tokens)
        if eos in tokens and on_eos != on_eot:
            raise ValueError(f"`eot_tokens` includes EOS ({eos}), so `train_on_eos` "
                             f"({on_eos}) and `train_on_eot` ({on_eot}) must agree; set them "
                             "to the same value or leave EOS out of `eot_tokens`")
    encoded = (tokenizer.encode(t, add_special_tokens=False) for t in tokens)
    ids = frozenset(one[0] for one in encoded if len(one) == 1)
    return ClosingRule(ids, tokenizer.eos_token_id, on_eot, on_eos)


def _written_eot_tokens(tokenizer: Any, template: str, tokens: list[str]) -> list[str]:
    """`eot_tokens` the template writes. Each must be one token of the vocabulary (a string
    split into pieces can never be found as one closing token); one the template never
    writes closes nothing, so it is dropped with a warning (Axolotl drops it too)."""
    kept = []
    for token in tokens:
        ids = tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"`eot_tokens`: {token!r} is not one token of this tokenizer "
                             f"(it encodes to {len(ids)}); add it with `tokens:` or "
                             "`special_tokens:`, or remove it")
        if token in template:
            kept.append(token)
        else:
            log.warning("`eot_tokens`: the chat template never writes %r; it closes no turn",
                        token)
    return kept
