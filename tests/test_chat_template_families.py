"""Named chat templates (`chat_template: llama3`, ...): exact label masks per family.

The tiny tokenizer gets each family's turn-closing token and loses its own template, so
ft's template for the family is what renders; the trained tokens, decoded, must be exactly
the assistant answers and the token that closes them. The tiny tokenizer's EOS is `</s>`,
so (as in Axolotl) a family's own closing token trains when `eot_tokens` names it.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import fixtures_tiny
from tests.fixtures_tiny import make_cfg, trained_runs
from trainer.data.formats import RowEncoder
from trainer.torch_free.chat_templates import FAMILIES
from trainer.torch_free.training import DatasetSpec

tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer

SYSTEM = "You are a concise assistant."
A1 = "The ocean covers most of the surface of the earth."
A2 = "Snow is frozen water that falls as soft white flakes."
CHAT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Tell me about the ocean."},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": "And snow?"},
    {"role": "assistant", "content": A2},
]
# What each family writes right before an assistant answer (the layout is the family's).
ASSISTANT_OPENER = {
    "chatml": "<|im_start|>assistant\n", "qwen_25": "<|im_start|>assistant\n",
    "qwen3": "<|im_start|>assistant\n", "qwen3_5": "<|im_start|>assistant\n",
    "nemotron_h": "<|im_start|>assistant\n", "falcon_h1": "<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama4": "<|header_start|>assistant<|header_end|>\n\n",
    "gemma": "<start_of_turn>model\n", "gemma3": "<start_of_turn>model\n",
    "phi_3": "<|assistant|>\n", "phi_35": "<|assistant|>\n",
    "phi_4": "<|im_start|>assistant<|im_sep|>",
    "mistral_v1": " [/INST] ", "mistral_v2v3": "[/INST] ", "mistral_v3_tekken": "[/INST]",
    "mistral_v7_tekken": "[/INST]",
    "cohere": "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "aya": "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    "alpaca": "### Response:\n", "metharme": "<|model|>", "exaone": "[|assistant|]",
    "exaone4": "[|assistant|]\n<think>\n\n</think>\n\n",
    "deepseek_v2": "<｜Assistant｜>", "deepseek_v3": "<｜Assistant｜>",
    "gemma4": "<|turn>model\n", "gemma4_unified": "<|turn>model\n", "jamba": "<|assistant|> ",
    "command_a": "<|CHATBOT_TOKEN|><|START_RESPONSE|>",
    "command_a_tool_use": "<|CHATBOT_TOKEN|><|START_RESPONSE|>",
    "command_a_rag": "<|CHATBOT_TOKEN|><|START_RESPONSE|>",
}
# Families whose format has no system turn in a conversation that ends with an answer:
# gemma refuses one; Mistral v2/v3 write it into the last user turn only.
NO_SYSTEM_HERE = {"gemma", "mistral_v2v3", "mistral_v3_tekken"}
# Metharme closes the whole conversation, not each answer, with EOS.
CLOSED_AT_END_ONLY = {"metharme"}


def family_tokenizer(base: Any, name: str, keep_own: bool = False) -> Any:
    tok = copy.deepcopy(base)
    if not keep_own:
        tok.chat_template = None
    closers = list(FAMILIES[name].closing)
    if closers:
        tok.add_tokens(closers, special_tokens=True)
    return tok


def encode(tok: Any, model_dir: Any, name: str, row: dict[str, Any], dataset: dict | None = None,
           **fields: Any) -> tuple[list[int], list[int]]:
    ds = {"path": "x.jsonl", "type": "chat_template", **(dataset or {})}
    cfg = make_cfg(model_dir, [ds], chat_template=name, **fields)
    batch = {key: [value] for key, value in row.items()}
    out = RowEncoder(DatasetSpec(**ds), cfg, tok)(batch)
    return out["input_ids"][0], out["labels"][0]


def closer(tok: Any, name: str) -> str:
    return (FAMILIES[name].closing or (tok.eos_token,))[0]


def eot(name: str) -> dict[str, Any]:
    """`eot_tokens` naming the family's closing token (none for those that close with EOS)."""
    closing = list(FAMILIES[name].closing)
    return {"eot_tokens": closing} if closing else {}


def test_every_family_has_an_expected_layout_here():
    assert set(ASSISTANT_OPENER) == set(FAMILIES)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_trains_exactly_the_answers_and_their_closing_token(
        tiny_tokenizer, tiny_model_dir, name):
    tok = family_tokenizer(tiny_tokenizer, name)
    chat = CHAT[1:] if name == "gemma" else CHAT
    ids, labels = encode(tok, tiny_model_dir, name, {"messages": chat}, **eot(name))
    end = closer(tok, name)
    first_end = "" if name in CLOSED_AT_END_ONLY else end
    assert trained_runs(tok, ids, labels) == [A1 + first_end, A2 + end]
    text = tok.decode(ids)
    assert ASSISTANT_OPENER[name] + A1 + first_end in text
    # the system text is kept (some inside the user turn), except where the format has none
    assert (SYSTEM in text) == (name not in NO_SYSTEM_HERE)
    # BOS only where the template writes it (as Axolotl tokenizes: no BOS added)
    assert ids.count(tok.bos_token_id) == (1 if "bos_token" in FAMILIES[name].jinja else 0)


@pytest.mark.parametrize("name", ["llama3", "gemma3", "phi_3", "cohere"])
def test_roles_to_train_user_adds_the_user_turns(tiny_tokenizer, tiny_model_dir, name):
    tok = family_tokenizer(tiny_tokenizer, name)
    ids, labels = encode(tok, tiny_model_dir, name, {"messages": CHAT},
                         {"roles_to_train": ["user", "assistant"]}, **eot(name))
    end = closer(tok, name)
    runs = trained_runs(tok, ids, labels)
    # Gemma writes the system text into the first user turn: that turn's content span
    # is the user's message alone, so the system text stays untrained.
    assert runs == [m["content"] + end for m in CHAT[1:]]


def test_train_on_eot_governs_turn_tokens_and_train_on_eos_the_eos(tiny_tokenizer,
                                                                   tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "llama3")
    ids, labels = encode(tok, tiny_model_dir, "llama3", {"messages": CHAT},
                         {"train_on_eos": "none", "train_on_eot": "last"}, **eot("llama3"))
    assert trained_runs(tok, ids, labels) == [A1, A2 + "<|eot_id|>"]
    mistral = family_tokenizer(tiny_tokenizer, "mistral_v2v3")
    ids, labels = encode(mistral, tiny_model_dir, "mistral_v2v3", {"messages": CHAT},
                         {"train_on_eos": "last"})
    assert trained_runs(mistral, ids, labels) == [A1, A2 + "</s>"]  # EOS closes its turns


def test_train_on_eot_defaults_to_train_on_eos(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "llama3")
    ids, labels = encode(tok, tiny_model_dir, "llama3", {"messages": CHAT},
                         {"train_on_eos": "none"}, **eot("llama3"))
    assert trained_runs(tok, ids, labels) == [A1, A2]


def test_eot_tokens_choose_which_tokens_close_a_turn(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "chatml")
    ids, labels = encode(tok, tiny_model_dir, "chatml", {"messages": CHAT},
                         eot_tokens=["<|im_end|>"])
    assert trained_runs(tok, ids, labels) == [A1 + "<|im_end|>", A2 + "<|im_end|>"]
    # EOS is not a closer this template writes: naming only it leaves the turns unclosed.
    ids, labels = encode(tok, tiny_model_dir, "chatml", {"messages": CHAT},
                         eot_tokens=[tok.eos_token])
    assert trained_runs(tok, ids, labels) == [A1, A2]


def test_an_eot_token_that_is_not_one_token_is_a_clear_error(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "chatml")
    with pytest.raises(ValueError, match=r"`eot_tokens`: '<\|not_a_token\|>' is not one token"):
        encode(tok, tiny_model_dir, "chatml", {"messages": CHAT}, eot_tokens=["<|not_a_token|>"])


def test_drop_system_message_and_field_messages(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "llama3")
    ids, labels = encode(tok, tiny_model_dir, "llama3", {"conversations": CHAT},
                         {"drop_system_message": True, "field_messages": "conversations"},
                         **eot("llama3"))
    assert SYSTEM not in tok.decode(ids)
    assert trained_runs(tok, ids, labels) == [A1 + "<|eot_id|>", A2 + "<|eot_id|>"]


def test_qwen_25_adds_its_default_system_message(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "qwen_25")
    ids, labels = encode(tok, tiny_model_dir, "qwen_25", {"messages": CHAT[1:3]},
                         **eot("qwen_25"))
    assert "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud." in tok.decode(ids)
    assert trained_runs(tok, ids, labels) == [A1 + "<|im_end|>"]


def test_a_named_template_is_ours_even_when_the_tokenizers_is_of_that_family(tiny_tokenizer,
                                                                           tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "qwen3", keep_own=True)
    tok.chat_template = tok.chat_template + "{{ 'OWN-TEMPLATE' }}"  # ChatML family, marked
    ids, _ = encode(tok, tiny_model_dir, "qwen3", {"messages": CHAT})
    assert "OWN-TEMPLATE" not in tok.decode(ids)
    assert "<think>\n\n</think>\n\n" + A2 in tok.decode(ids)  # Qwen 3's, not plain ChatML
    ids, _ = encode(tok, tiny_model_dir, "tokenizer_default", {"messages": CHAT})
    assert "OWN-TEMPLATE" in tok.decode(ids)


def test_a_family_whose_closing_token_the_tokenizer_lacks_is_refused(tiny_tokenizer,
                                                                     tiny_model_dir):
    tok = copy.deepcopy(tiny_tokenizer)
    with pytest.raises(ValueError, match="closes turns with <\\|eot_id\\|>, which this "
                                         "tokenizer does not have"):
        encode(tok, tiny_model_dir, "llama3", {"messages": CHAT})


def test_chat_template_kwargs_reach_the_template(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "chatml")
    template = ("{% for m in messages %}{{ greeting }}{{ m['content'] }}{{ '<|im_end|>' }}"
                "{% endfor %}")
    ids, _ = encode(tok, tiny_model_dir, template, {"messages": CHAT},
                    chat_template_kwargs={"greeting": "HELLO:"})
    assert "HELLO:" + SYSTEM in tok.decode(ids)


def _spec(model_dir: Any, extra: str) -> str:
    return (f"base_model: {model_dir}\ndatasets:\n  - path: x.jsonl\n    type: chat_template\n"
            + extra)


def test_validation_reads_a_local_tokenizer_for_the_named_template(tiny_model_dir):
    from orchestrator.spec.load import parse_spec
    from trainer.torch_free.errors import SpecError

    with pytest.raises(SpecError, match="`llama3` closes turns with <\\|eot_id\\|>, which the "
                                        "tokenizer in .* does not have"):
        parse_spec(_spec(tiny_model_dir, "chat_template: llama3\n"), "spec.yaml")
    parse_spec(_spec(tiny_model_dir, "chat_template: llama3\ntokens: ['<|eot_id|>']\n"),
               "spec.yaml")
    parse_spec(_spec(tiny_model_dir, "chat_template: qwen3\n"), "spec.yaml")  # its own
    with pytest.raises(SpecError, match="no chat template named 'vicuna9'"):
        parse_spec(_spec(tiny_model_dir, "chat_template: vicuna9\n"), "spec.yaml")
    with pytest.raises(SpecError, match="'llava' is a multimodal template"):
        parse_spec(_spec(tiny_model_dir, "chat_template: llava\n"), "spec.yaml")


def test_validation_checks_what_a_local_tokenizer_lacks_for_the_template_in_force(
        tiny_model_dir, tmp_path):
    import shutil
    import warnings

    from orchestrator.spec.load import SpecWarning, parse_spec
    from trainer.torch_free.errors import SpecError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(_spec(tiny_model_dir, "chat_template: command_a\ntokens: "
                         "['<|END_RESPONSE|>', '<|END_ACTION|>', '<|END_OF_TURN_TOKEN|>']\n"),
                   "spec.yaml")
    assert [str(w.message) for w in caught] == []  # a named template is ft's: nothing to say
    bare = shutil.copytree(tiny_model_dir, tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(SpecError, match="has no chat template, and `tokenizer_default` uses it"):
        parse_spec(_spec(bare, ""), "spec.yaml")
    # a fallback name renders its template when the tokenizer has none: its closers count
    with pytest.raises(SpecError, match="`llama3` closes turns with <\\|eot_id\\|>"):
        parse_spec(_spec(bare, "chat_template: tokenizer_default_fallback_llama3\n"), "spec.yaml")
    parse_spec(_spec(tiny_model_dir, "chat_template: tokenizer_default_fallback_llama3\n"),
               "spec.yaml")  # the tokenizer's own template is used
