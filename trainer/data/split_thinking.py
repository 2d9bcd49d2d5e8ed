"""`split_thinking`: reasoning written inline in an answer moves to its own message key.

Axolotl's rule: in an assistant message whose content holds a whole `<think>...</think>`
block (or `<reasoning>...</reasoning>`, `<|begin_of_thought|>...<|end_of_thought|>`; the
first kind found wins), the text inside becomes the reasoning (trimmed) and the rest of the
content, leading whitespace removed, the answer; when that rest holds a
`<|begin_of_solution|>...<|end_of_solution|>` block, the answer is its trimmed inside. The
template then writes the reasoning where it writes `template_thinking_key`.
"""

from __future__ import annotations

from typing import Any

THINKING_PAIRS = (("<think>", "</think>"), ("<reasoning>", "</reasoning>"),
                  ("<|begin_of_thought|>", "<|end_of_thought|>"))
SOLUTION_PAIR = ("<|begin_of_solution|>", "<|end_of_solution|>")


def split_thinking(message: dict[str, Any], thinking_key: str) -> None:
    """Move inline reasoning of an assistant `message` to `thinking_key`, in place."""
    content = message.get("content")
    if message.get("role") != "assistant" or not isinstance(content, str):
        return
    for opener, closer in THINKING_PAIRS:
        if opener in content and closer in content:
            start, end = content.find(opener), content.find(closer)
            message[thinking_key] = content[start + len(opener):end].strip()
            rest = content[end + len(closer):].lstrip()
            message["content"] = _solution(rest)
            return


def _solution(rest: str) -> str:
    opener, closer = SOLUTION_PAIR
    if opener in rest and closer in rest:
        return rest[rest.find(opener) + len(opener):rest.find(closer)].strip()
    return rest
