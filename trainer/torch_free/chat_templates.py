"""The chat templates a spec can name (`chat_template: llama3`), torch-free.

Validation checks a name here before anything runs; the trainer renders with it. A named
template is that template, whatever the tokenizer ships: ft's own jinja for the family,
written from its published turn layout (trainer/torch_free/chat_formats/), rendering the same
text as Axolotl's template of that name (bench/axolotl_template_check.py compares them).
`tokenizer_default` is the tokenizer's own. A template that writes `bos_token` itself gets no
second BOS from the encoder: chat rows are encoded exactly as rendered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.torch_free.chat_formats import (
    chatml,
    command_a,
    gemma,
    gemma4,
    jamba,
    llama,
    mistral,
    other,
    phi,
)
from trainer.torch_free.chat_formats.family import Family

__all__ = ["FAMILIES", "Family", "MULTIMODAL", "SPECIAL_CHOICES", "TOKENIZER_ONLY",
           "choice_problem", "is_inline_jinja", "tokenizer_only_note"]

FAMILIES: dict[str, Family] = {**chatml.FAMILIES, **llama.FAMILIES, **gemma.FAMILIES,
                               **gemma4.FAMILIES, **phi.FAMILIES, **mistral.FAMILIES,
                               **other.FAMILIES, **jamba.FAMILIES,
                               **command_a.FAMILIES}

# Values that are not a family: the tokenizer's template, the spec's jinja. Axolotl also
# takes `tokenizer_default_fallback_<name>` for any name: the tokenizer's, else <name>'s.
SPECIAL_CHOICES = ("tokenizer_default", "jinja")
FALLBACK_PREFIX = "tokenizer_default_fallback_"
# Axolotl's names for image/audio models' templates: multimodal training is refused.
MULTIMODAL = frozenset({"llama3_2_vision", "pixtral", "llava", "qwen2_vl", "gemma3n"})
# Axolotl's text template names ft has no jinja of its own for, which would use the model
# tokenizer's own template: none today (every one is in FAMILIES); kept so validation and its
# warning stay in one place should Axolotl add a name before ft does.
TOKENIZER_ONLY: frozenset[str] = frozenset()


def fallback_target(value: str) -> str | None:
    """`tokenizer_default_fallback_chatml` -> `chatml` (None for any other value)."""
    return value[len(FALLBACK_PREFIX):] if value.startswith(FALLBACK_PREFIX) else None


def tokenizer_only_note(value: str) -> str | None:
    if value not in TOKENIZER_ONLY:
        return None
    return (f"`chat_template: {value}`: ft has no template of its own for {value}; it uses the "
            "model tokenizer's own chat template (the one the model was trained with)")


def is_inline_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def jinja_file(value: str) -> Path | None:
    """The file `chat_template_jinja:` names (as in Axolotl, the value may be a path to a
    jinja file instead of the template itself); None for an inline template."""
    return None if is_inline_jinja(value) else Path(value).expanduser()


def jinja_problem(value: str) -> str | None:
    """Why `chat_template_jinja: value` cannot be used (None when it can)."""
    path = jinja_file(value)
    if path is None or path.is_file():
        return None
    return (f"{value!r} is neither a jinja template (it has no `{{{{` or `{{%`) nor a file "
            "here; give the template itself or the path of a .jinja file")


def jinja_source(value: str) -> str:
    """The template text of `chat_template_jinja:` (the file's text for a path)."""
    problem = jinja_problem(value)
    if problem:
        raise ValueError(f"`chat_template_jinja`: {problem}")
    path = jinja_file(value)
    return path.read_text(encoding="utf-8") if path else value


def jinja_settings(t: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(key path, value) of every `chat_template_jinja:` a TrainingConfig sets."""
    values = [(("chat_template_jinja",), t.chat_template_jinja)] + [
        ((section, index, "chat_template_jinja"), ds.chat_template_jinja)
        for section in ("datasets", "test_datasets")
        for index, ds in enumerate(getattr(t, section) or [])]
    return [(key, value) for key, value in values if value]


def choice_problem(value: str) -> str | None:
    """Why `chat_template: value` cannot be used (None when it can)."""
    target = fallback_target(value)
    if target is not None:
        problem = choice_problem(target) if target not in SPECIAL_CHOICES else "unknown"
        return None if problem is None else (
            f"{value!r}: the fallback after `{FALLBACK_PREFIX}` must be a named template "
            f"ft has ({target!r} is not one)")
    if value in FAMILIES or value in SPECIAL_CHOICES or value in TOKENIZER_ONLY \
            or is_inline_jinja(value):
        return None
    if value in MULTIMODAL:
        return f"{value!r} is a multimodal template; multimodal is not supported"
    supported = ", ".join([*SPECIAL_CHOICES, *FAMILIES, *sorted(TOKENIZER_ONLY)])
    return (f"ft has no chat template named {value!r}; use one of {supported}, "
            f"`{FALLBACK_PREFIX}<name>`, an inline jinja template, or `chat_template: jinja` "
            "with `chat_template_jinja:`")
