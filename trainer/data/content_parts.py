"""Message contents given as a list of parts, each optionally marked trained or not.

As in Axolotl, a content (or reasoning) written as a list of `{text: ...}` parts (`content`
or `value` also name the text) is joined into one string, and a part's `train: false` (or
`weight: 0`) leaves its characters untrained: the parts become a character detail like
`message_field_training_detail` (train_detail.py). Parts without either key are trained
with their turn; when no part has one, the joined text is an ordinary content.
"""

from __future__ import annotations

from typing import Any


def join_parts(value: Any) -> tuple[str, list[dict[str, Any]] | None] | None:
    """(joined text, detail or None) for a list of parts; None for anything else."""
    if not isinstance(value, list):
        return None
    texts: list[str] = []
    detail: list[dict[str, Any]] = []
    marked = False
    for part in value:
        if not isinstance(part, dict):
            continue
        text = part.get("text") or part.get("content") or part.get("value") or ""
        train, weight = part.get("train"), part.get("weight")
        marked = marked or train is not None or weight is not None
        if train is None:
            train = weight not in (0, 0.0) if weight is not None else True
        if text:
            start = sum(len(t) for t in texts)
            detail.append({"begin_offset": start, "end_offset": start + len(text) - 1,
                           "train": bool(train)})
        texts.append(text)
    return "".join(texts), (detail if marked else None)
