"""`message_field_training_detail`: train only some characters of a message, as Axolotl does.

A message may carry a list of `{begin_offset, end_offset, train}` (character offsets into
its content, both inclusive). The content is tokenized on its own; each token is taken to
cover the characters up to the next token's start, and each detail is widened to whole
tokens (a token it cuts into is pulled in). A token trains when it lies inside a widened
detail whose `train` is true. Token k of the content is token k of the turn in the full
conversation, so the returned spans are content character offsets for those tokens.
"""

from __future__ import annotations

from typing import Any

Span = tuple[int, int]


def detail_spans(tokenizer: Any, content: str, details: list[dict[str, Any]],
                 key: str) -> list[Span]:
    """Character spans of `content` whose tokens train; `key` names the field in errors."""
    if not isinstance(content, str):
        raise ValueError(f"`{key}` needs a text content, not {type(content).__name__}")
    offsets = tokenizer(content, add_special_tokens=False,
                        return_offsets_mapping=True)["offset_mapping"]
    if not offsets:
        return []
    covers = [(offsets[i][0], offsets[i + 1][0] - 1) for i in range(len(offsets) - 1)]
    covers.append((offsets[-1][0], len(content) - 1))
    trained: set[int] = set()
    for detail in details:
        begin, end, train = _fields(detail, key)
        widened = _widen(begin, end, covers)
        if widened is None or not train:
            continue
        lo, hi = widened
        trained.update(i for i, (s, e) in enumerate(covers) if s >= lo and e <= hi)
    return [tuple(offsets[i]) for i in sorted(trained)]


def _fields(detail: Any, key: str) -> tuple[int, int, bool]:
    try:
        return int(detail["begin_offset"]), int(detail["end_offset"]), bool(detail["train"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"`{key}`: each entry needs integer `begin_offset`, `end_offset` "
                         f"and a boolean `train`; got {detail!r}") from None


def _widen(begin: int, end: int, covers: list[Span]) -> Span | None:
    """The detail grown to the tokens it touches (None when it touches none)."""
    n = len(covers)
    first = next((i for i, (s, _) in enumerate(covers) if s >= begin), n)
    if first > 0 and covers[first - 1][1] > begin:
        first -= 1
    last = next((i for i in range(n - 1, -1, -1) if covers[i][1] <= end), -1)
    if last < n - 1 and covers[last + 1][0] < end:
        last += 1
    if first > last:
        return None
    return covers[first][0], covers[last][1]
