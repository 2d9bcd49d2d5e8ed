"""Where one turn sits in a rendered conversation, found by rendering it again with a stand-in.

The conversation is rendered as is, then once per stand-in with only that turn changed: its
content replaced by the stand-in and every other key of the message left out (the reasoning
text, tool calls, ...). The characters where the two renders differ are the turn's own
text, whatever the template writes around it, so the span stays right for any template and
for templates that change: it is never read from a template's layout. This is Axolotl's rule,
and it decides what trains with a turn: its content and, when the template writes them, its
reasoning text and tool calls; not the role header or the separators the template adds.

Two stand-ins with different first and last characters: a template can glue one of its own
characters to a stand-in when they happen to match (so the common prefix or suffix swallows
it); the other stand-in then shows it, and the union of both diffs is the real span. The
second render is needed only then: when the first diff begins and ends exactly where the
first stand-in sits in its render, nothing was swallowed and the second cannot widen it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Render = Callable[[list[dict[str, Any]]], str]
STAND_INS = ("\u2045ft turn a\u2046", "~ft turn b~")


def turn_span(render: Render, messages: list[dict[str, Any]], index: int, text: str, *,
              keep: tuple[str, ...] = (), stand_in_for: str = "content"
              ) -> tuple[int, int] | None:
    """(start, end) characters of message `index` inside `text` (its full render), or None
    when the template writes nothing of it.

    `keep`: message keys the stand-in keeps (so they stay out of the span); `stand_in_for`:
    the key that is replaced (`content`, or the reasoning key to locate the reasoning alone).
    """
    original = messages[index]
    starts, ends = [], []
    for stand_in in STAND_INS:
        dummy = {"role": original.get("role"), "content": original.get("content", "")}
        dummy.update({key: original[key] for key in keep if key in original})
        dummy[stand_in_for] = stand_in
        other = render([*messages[:index], dummy, *messages[index + 1:]])
        start, end = differing_span(text, other)
        starts.append(start)
        ends.append(end)
        at = other.find(stand_in)
        if at == start and len(other) - at - len(stand_in) == len(text) - end:
            break  # the diff is exactly the stand-in's place: nothing was swallowed
    start, end = min(starts), max(ends)
    return (start, end) if end > start else None


def differing_span(text: str, other: str) -> tuple[int, int]:
    """The span of `text` outside the longest common prefix and suffix with `other` (the
    suffix may not reach into the prefix, for templates that repeat themselves)."""
    limit = min(len(text), len(other))
    start = _common_prefix(text, other, limit)
    tail = _common_prefix(text[::-1], other[::-1], limit - start)
    return start, len(text) - tail


def _common_prefix(a: str, b: str, limit: int) -> int:
    """Length of the common prefix (at most `limit`): a binary search over slice compares,
    which run in C (a per-character loop would cost more than the render it saves)."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
