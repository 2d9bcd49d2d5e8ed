"""Prompt templates: the alpaca prompt and the chat templates a spec can name."""

from __future__ import annotations

from typing import Any

# ChatML as Qwen and many others write it (no BOS: the encoder adds one if the tokenizer does).
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

NAMED_TEMPLATES = {"chatml": CHATML}
SUPPORTED = ("tokenizer_default", "tokenizer_default_fallback_chatml", "jinja",
             *NAMED_TEMPLATES, "an inline jinja template")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input_text: str | None) -> str:
    if input_text:
        return ALPACA_WITH_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_NO_INPUT.format(instruction=instruction)


def is_inline_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def resolve_chat_template(choice: str | None, tokenizer: Any, *,
                          jinja: str | None = None) -> str:
    """The jinja source for `chat_template:` (a dataset's own value wins over the top level).

    `jinja` is the top-level `chat_template_jinja`, used by `chat_template: jinja`.
    """
    choice = choice or "tokenizer_default"
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one is for chat
        own = own.get("default")
    if choice == "tokenizer_default":
        if not own:
            raise ValueError("`chat_template: tokenizer_default` but the tokenizer has no chat "
                             "template; set `chat_template: chatml` or an inline template")
        return own
    if choice == "tokenizer_default_fallback_chatml":
        return own or CHATML
    if choice == "jinja":
        if not jinja:
            raise ValueError("`chat_template: jinja` needs `chat_template_jinja:`")
        return jinja
    if choice in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[choice]
    if is_inline_jinja(choice):
        return choice
    raise ValueError(f"unknown chat_template {choice!r}; supported: {', '.join(SUPPORTED)}")
