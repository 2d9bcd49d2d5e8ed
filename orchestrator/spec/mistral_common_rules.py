"""What `tokenizer_use_mistral_common: true` cannot be combined with (checked by `ft validate`).

mistral-common's chat encoding IS the template of these models, so a `chat_template` would
be a second template (Axolotl refuses it too); its vocabulary cannot grow (`tokens`,
`special_tokens`); its turns close with EOS only (`eot_tokens` has nothing to pick from).
ft encodes only chats through it: other dataset types render text that mistral-common would
tokenize without its control tokens.
"""

from __future__ import annotations

from trainer.torch_free.training import TrainingConfig

Rule = tuple[tuple[str | int, ...], str]
_KEY = "`tokenizer_use_mistral_common: true`"
_CLASH = {
    "chat_template": "mistral-common's own chat encoding is these models' template; remove "
                     "`chat_template` (Axolotl refuses the pair too)",
    "chat_template_jinja": "mistral-common's own chat encoding is these models' template; "
                           "remove `chat_template_jinja`",
    "special_tokens": "a mistral-common vocabulary cannot be changed; remove `special_tokens`",
    "tokens": "a mistral-common vocabulary cannot be changed; remove `tokens`",
    "eot_tokens": "mistral-common closes every assistant turn with EOS (`</s>`), the only "
                  "turn-closing token; remove `eot_tokens` (`train_on_eos` decides)",
    **dict.fromkeys(("tokenizer_type", "tokenizer_use_fast", "tokenizer_legacy"),
                    "these choose among Hugging Face tokenizers; mistral-common's is one "
                    "class, so remove them"),
}
# Pre-tokenized rows (no `type`) never meet the tokenizer.
_ENCODED_TYPES = ("chat_template", None, "pretokenized")


def mistral_common_problems(t: TrainingConfig) -> list[Rule]:
    if not t.tokenizer_use_mistral_common:
        return []
    problems = [((key,), f"{_KEY}: {why}") for key, why in _CLASH.items()
                if getattr(t, key) is not None and getattr(t, key) != []]
    for name in sorted(set(t.chat_template_kwargs or {}) - {"reasoning_effort"}):
        problems.append((("chat_template_kwargs", name), (
            f"{_KEY}: mistral-common's chat encoding reads `reasoning_effort` only, so "
            f"`{name}` would change nothing; remove it (Magistral thinks where an assistant "
            "message's content has a `{type: thinking, thinking: ...}` part)")))
    for section, sets in (("datasets", t.datasets), ("test_datasets", t.test_datasets or [])):
        for index, ds in enumerate(sets):
            if ds.chat_template or ds.chat_template_jinja:
                problems.append(((section, index, "chat_template"),
                                 f"{_KEY}: {_CLASH['chat_template']}"))
            if ds.type not in _ENCODED_TYPES:
                problems.append(((section, index, "type"), (
                    f"{_KEY} encodes `type: chat_template` rows (mistral-common's chat "
                    f"encoding); `type: {ds.type}` text would lose its control tokens: use "
                    "chat rows, or remove the key to use the model's tokenizer.json")))
    return problems
