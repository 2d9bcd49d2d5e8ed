"""The chat templates a spec can name (`chat_template: llama3`), torch-free.

Validation checks a name here before anything runs; the trainer renders with it. Each
family is written for ft from the published turn layout of its models: role headers and
the token that closes a turn. Where the model's tokenizer ships its own template of the
same family (recognised by `signature`), that one wins: it is what the model was trained
with (tools, dates, thinking tags included). No BOS in ours: the encoder adds one where
the tokenizer does.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    jinja: str
    signature: str  # a string only this family's templates contain
    closing: tuple[str, ...]  # the tokens that close a turn (they must be single tokens)


def _chatml(system_default: str | None = None) -> str:
    default = ("{% if messages[0]['role'] != 'system' %}"
               f"{{{{ '<|im_start|>system\\n{system_default}<|im_end|>\\n' }}}}"
               "{% endif %}") if system_default else ""
    return (default + "{% for message in messages %}"
            "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
            "{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


_LLAMA3 = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}")

_LLAMA4 = (
    "{% for message in messages %}"
    "{{ '<|header_start|>' + message['role'] + '<|header_end|>\\n\\n' + "
    "message['content'] | trim + '<|eot|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\\n\\n' }}"
    "{% endif %}")

# Gemma has no system role: the system text opens the first user turn.
_GEMMA = (
    "{% set system = messages[0]['content'] + '\\n\\n' if messages[0]['role'] == 'system' "
    "else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (system if loop.first else '') + "
    "message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}")

_PHI3 = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")

# Mistral's instruct layouts: the system text joins the first user message; an assistant
# answer ends with EOS.
def _mistral(open_inst: str, close_inst: str, space: str) -> str:
    return (
        "{% set system = messages[0]['content'] + '\\n\\n' if messages[0]['role'] == 'system' "
        "else '' %}"
        "{% for message in messages if message['role'] != 'system' %}"
        "{% if message['role'] == 'user' %}"
        f"{{{{ '{open_inst}' + (system if loop.first else '') + message['content'] + "
        f"'{close_inst}' }}}}"
        f"{{% else %}}{{{{ '{space}' + message['content'] + eos_token }}}}{{% endif %}}"
        "{% endfor %}")


_MISTRAL_V7 = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST]' + message['content'] + '[/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}")

_COHERE = (
    "{% for message in messages %}"
    "{% set token = {'system': '<|SYSTEM_TOKEN|>', 'user': '<|USER_TOKEN|>', "
    "'assistant': '<|CHATBOT_TOKEN|>'}[message['role']] %}"
    "{{ '<|START_OF_TURN_TOKEN|>' + token + message['content'] + '<|END_OF_TURN_TOKEN|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}")

_IM = ("<|im_end|>",)
_QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

FAMILIES: dict[str, Family] = {
    "chatml": Family(_chatml(), "<|im_start|>", _IM),
    "qwen_25": Family(_chatml(_QWEN25_SYSTEM), "<|im_start|>", _IM),
    "qwen3": Family(_chatml(), "<|im_start|>", _IM),
    "llama3": Family(_LLAMA3, "<|start_header_id|>", ("<|eot_id|>",)),
    "llama4": Family(_LLAMA4, "<|header_start|>", ("<|eot|>",)),
    "gemma": Family(_GEMMA, "<start_of_turn>", ("<end_of_turn>",)),
    "gemma3": Family(_GEMMA, "<start_of_turn>", ("<end_of_turn>",)),
    "phi_3": Family(_PHI3, "<|assistant|>", ("<|end|>",)),
    "phi_35": Family(_PHI3, "<|assistant|>", ("<|end|>",)),
    "mistral_v1": Family(_mistral("[INST] ", " [/INST]", " "), "[INST]", ()),
    "mistral_v2v3": Family(_mistral("[INST] ", "[/INST]", " "), "[INST]", ()),
    "mistral_v3_tekken": Family(_mistral("[INST]", "[/INST]", ""), "[INST]", ()),
    "mistral_v7_tekken": Family(_MISTRAL_V7, "[SYSTEM_PROMPT]", ()),
    "cohere": Family(_COHERE, "<|START_OF_TURN_TOKEN|>", ("<|END_OF_TURN_TOKEN|>",)),
}

# Values that are not a family: the tokenizer's template, the spec's jinja.
SPECIAL_CHOICES = ("tokenizer_default", "tokenizer_default_fallback_chatml", "jinja")
# Axolotl's names for image/audio models' templates.
MULTIMODAL = frozenset({"llama3_2_vision", "pixtral", "llava", "qwen2_vl", "gemma3n"})
# Axolotl's names for one model family's template that ft has no jinja of its own for: the
# model's tokenizer ships that template, so it is used (and the user is told once).
TOKENIZER_ONLY = frozenset({"qwen3_5", "falcon_h1", "gemma4", "gemma4_unified", "jamba",
                            "deepseek_v2", "deepseek_v3", "nemotron_h", "exaone", "exaone4",
                            "command_a", "command_a_tool_use", "command_a_rag", "aya"})


def tokenizer_only_note(value: str) -> str | None:
    if value not in TOKENIZER_ONLY:
        return None
    return (f"`chat_template: {value}`: ft has no template of its own for {value}; it uses the "
            "model tokenizer's own chat template (the one the model was trained with)")


def is_inline_jinja(value: str) -> bool:
    return "{{" in value or "{%" in value


def choice_problem(value: str) -> str | None:
    """Why `chat_template: value` cannot be used (None when it can)."""
    if value in FAMILIES or value in SPECIAL_CHOICES or value in TOKENIZER_ONLY \
            or is_inline_jinja(value):
        return None
    if value in MULTIMODAL:
        return f"{value!r} is a multimodal template; multimodal is not supported"
    supported = ", ".join([*SPECIAL_CHOICES, *FAMILIES, *sorted(TOKENIZER_ONLY)])
    return (f"ft has no chat template named {value!r}; use one of {supported}, an inline "
            "jinja template, or `chat_template: jinja` with `chat_template_jinja:`")
