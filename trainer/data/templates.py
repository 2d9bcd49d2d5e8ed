"""Prompt templates: the alpaca prompt and the chat templates a spec can name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.torch_free.chat_templates import (
    FAMILIES,
    TOKENIZER_ONLY,
    choice_problem,
    fallback_target,
    is_inline_jinja,
    jinja_source,
)


@dataclass(frozen=True)
class ChatTemplate:
    jinja: str
    # The tokens that close a turn in this template; None: the tokenizer's special tokens.
    closing: tuple[str, ...] | None = None


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


def adopt_chat_template(cfg: Any, tokenizer: Any) -> None:
    """Make the spec's top-level `chat_template:` the tokenizer's own, as Axolotl does: the
    tokenizer saved with the model (and used by inference and merges) then renders what
    training rendered, and `tokenizer_default` on a dataset means that template too."""
    if not cfg.chat_template or cfg.chat_template == "tokenizer_default":
        return
    tokenizer.chat_template = resolve_chat_template(
        cfg.chat_template, tokenizer, jinja=cfg.chat_template_jinja, check_vocab=False).jinja


def resolve_chat_template(choice: str | None, tokenizer: Any, *,
                          jinja: str | None = None, check_vocab: bool = True) -> ChatTemplate:
    """The template for `chat_template:` (a dataset's own value wins over the top level).

    `jinja` is the chat_template_jinja in force, used by `chat_template: jinja`. A named
    template is ft's jinja of that name (trainer/torch_free/chat_templates.py), whatever the
    tokenizer ships: the same text Axolotl renders for that name. `tokenizer_default` is the
    tokenizer's own; `tokenizer_default_fallback_<name>` the tokenizer's, else <name>.
    `check_vocab`: a named template's turn-closing tokens must be in the vocabulary (the masks
    need them; not checked when the template is only stored with the tokenizer).
    """
    choice = choice or "tokenizer_default"
    problem = choice_problem(choice)
    if problem:
        raise ValueError(f"`chat_template`: {problem}")
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one is for chat
        own = own.get("default")
    if choice == "tokenizer_default":
        if not own:
            raise ValueError("`chat_template: tokenizer_default` but the tokenizer has no chat "
                             "template; set `chat_template: chatml` or an inline template")
        return ChatTemplate(own)
    fallback = fallback_target(choice)
    if fallback is not None:
        return ChatTemplate(own) if own else resolve_chat_template(fallback, tokenizer,
                                                                   check_vocab=check_vocab)
    if choice == "jinja":
        if not jinja:
            raise ValueError("`chat_template: jinja` needs `chat_template_jinja:`")
        return ChatTemplate(jinja_source(jinja))
    if is_inline_jinja(choice):
        return ChatTemplate(choice)
    if choice in TOKENIZER_ONLY:
        if not own:
            raise ValueError(f"`chat_template: {choice}`: ft has no template of its own for "
                             f"{choice} and this tokenizer ships none; use `chatml`, another "
                             "named template or `chat_template: jinja`")
        return ChatTemplate(own)
    return _ours(choice, tokenizer, check_vocab)


def _ours(name: str, tokenizer: Any, check_vocab: bool = True) -> ChatTemplate:
    """ft's template of a family; its turn-closing tokens must be single tokens of the
    vocabulary, or the masks could not find (and train) them."""
    family = FAMILIES[name]
    if not check_vocab:
        return ChatTemplate(family.jinja, family.closing)
    vocab = tokenizer.get_vocab()
    missing = [t for t in family.closing if t not in vocab]
    if missing:
        raise ValueError(f"`chat_template: {name}` closes turns with {', '.join(missing)}, "
                         "which this tokenizer does not have; add it with `special_tokens` / "
                         "`tokens`, or use the model's own template (`tokenizer_default`)")
    return ChatTemplate(family.jinja, family.closing)
