"""Tiny offline tokenizers, templates and conversations for the chat-mask goldens
(tests/test_chat_masks.py) and the Axolotl comparison (bench/axolotl_mask_check.py).

The tokenizers are the tiny BPE one with a family's special tokens added and EOS set as the
family's models set it: `chatml` keeps EOS `</s>` (its turns close with `<|im_end|>`, which
is then not EOS), `chatml_eos` and `qwen3` make `<|im_end|>` EOS (as Qwen's chat models
do), `llama3` makes `<|eot_id|>` EOS (as Llama-3 Instruct does). The templates below are
our own, written from each family's published turn layout.
"""

from __future__ import annotations

import copy
from typing import Any

SYSTEM = "Be brief."
U1, A1 = "Tell me about the ocean.", "The ocean is big."
U2, A2 = "And snow?", "Snow is cold."
R1, R2 = "The user asks about the sea.", "Snow: frozen water."

PLAIN = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": U1},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": U2},
    {"role": "assistant", "content": A2},
]


def with_reasoning(key: str = "reasoning_content") -> list[dict[str, Any]]:
    """PLAIN with reasoning on both answers (under `key`)."""
    out = copy.deepcopy(PLAIN)
    out[2][key], out[4][key] = R1, R2
    return out


def inline_thinking() -> list[dict[str, Any]]:
    """PLAIN with the reasoning written inside the answers (`<think>` blocks)."""
    out = copy.deepcopy(PLAIN)
    out[2]["content"] = f"<think>\n{R1}\n</think>\n\n{A1}"
    out[4]["content"] = f"<think>{R2}</think> <|begin_of_solution|> {A2} <|end_of_solution|>"
    return out


def with_parts() -> list[dict[str, Any]]:
    """Contents as lists of parts: the first answer's first part untrained, the second
    answer in unmarked parts, the second answer's reasoning in parts, its first untrained."""
    out = copy.deepcopy(PLAIN)
    out[2]["content"] = [{"type": "text", "text": "The ocean", "train": False},
                         {"type": "text", "text": " is big.", "weight": 1}]
    out[4]["content"] = [{"type": "text", "text": "Snow is"}, {"type": "text", "text": " cold."}]
    out[4]["reasoning_content"] = [{"text": "Snow:", "weight": 0}, {"text": " frozen water."}]
    return out


def with_flags(field: str = "training") -> list[dict[str, Any]]:
    """The first answer marked untrained, the second user turn marked trained."""
    out = copy.deepcopy(PLAIN)
    out[2][field], out[3][field] = False, True
    return out


def with_detail(field: str = "training_detail") -> list[dict[str, Any]]:
    """The second answer trains only its last two words ("is cold.")."""
    out = copy.deepcopy(PLAIN)
    start = A2.index("is cold")
    out[4][field] = [{"begin_offset": 0, "end_offset": start - 1, "train": False},
                     {"begin_offset": start, "end_offset": len(A2) - 1, "train": True}]
    return out


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}")


def thinking_template(key: str = "reasoning_content") -> str:
    """ChatML with Qwen3's thinking layout: answers after the last user message open with a
    think block holding the message's `key` (empty when it has none); earlier answers'
    reasoning is not written."""
    return (
        "{%- set ns = namespace(last_user=-1) %}"
        "{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}"
        "{% endif %}{% endfor %}"
        "{%- for m in messages %}"
        "{%- if m.role == 'assistant' %}{{- '<|im_start|>assistant\\n' }}"
        "{%- if loop.index0 > ns.last_user %}"
        f"{{{{- '<think>\\n' + (m.{key} or '') | trim + '\\n</think>\\n\\n' }}}}"
        "{%- endif %}{{- m.content + '<|im_end|>\\n' }}"
        "{%- else %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def family_tokenizer(base: Any, family: str) -> Any:
    """The tiny tokenizer dressed as `family` (see the module docstring)."""
    tok = copy.deepcopy(base)
    if family == "chatml":
        return tok
    if family == "chatml_eos":
        tok.eos_token = "<|im_end|>"
        return tok
    if family == "qwen3":
        tok.add_tokens(["<think>", "</think>"], special_tokens=True)
        tok.eos_token = "<|im_end|>"
        tok.chat_template = thinking_template()
        return tok
    if family == "llama3":
        tok.add_tokens(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                       special_tokens=True)
        tok.eos_token = "<|eot_id|>"
        tok.chat_template = LLAMA3_TEMPLATE
        return tok
    raise ValueError(family)


def with_tool_call() -> list[dict[str, Any]]:
    """An answer that calls a tool (arguments as a JSON string), the tool's reply, an answer."""
    call = {"type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    return [PLAIN[1], {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "Snow."}, {"role": "assistant", "content": A2}]


EDGES = {
    # Contents with outer whitespace (templates that trim write them trimmed).
    "padded": [PLAIN[1], {"role": "assistant", "content": f"  {A1}\n"}],
    # The conversation ends with a user turn: the last closing token is not a trained one.
    "ends_with_user": PLAIN[:4],
    # An empty answer: nothing of it to train, so neither is its closing token.
    "empty_answer": [PLAIN[1], {"role": "assistant", "content": ""}, PLAIN[3], PLAIN[4]],
}


def sharegpt(conv: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`conv` in sharegpt keys (from/value, human/gpt); other keys kept."""
    names = {"user": "human", "assistant": "gpt"}
    return [{"from": names.get(m["role"], m["role"]), "value": m["content"],
             **{k: v for k, v in m.items() if k not in ("role", "content")}} for m in conv]
