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
    "qwen3": "<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama4": "<|header_start|>assistant<|header_end|>\n\n",
    "gemma": "<start_of_turn>model\n", "gemma3": "<start_of_turn>model\n",
    "phi_3": "<|assistant|>\n", "phi_35": "<|assistant|>\n",
    "mistral_v1": " [/INST] ", "mistral_v2v3": "[/INST] ", "mistral_v3_tekken": "[/INST]",
    "mistral_v7_tekken": "[/INST]",
    "cohere": "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
}


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
    ids, labels = encode(tok, tiny_model_dir, name, {"messages": CHAT}, **eot(name))
    end = closer(tok, name)
    assert trained_runs(tok, ids, labels) == [A1 + end, A2 + end]
    text = tok.decode(ids)
    assert ASSISTANT_OPENER[name] + A1 + end in text
    assert SYSTEM in text  # every family keeps the system text (some inside the user turn)
    assert ids.count(tok.bos_token_id) <= 1  # BOS where the template writes it, never twice


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


def test_the_tokenizers_own_template_wins_when_it_is_of_that_family(tiny_tokenizer,
                                                                    tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "qwen3", keep_own=True)
    tok.chat_template = tok.chat_template + "{{ 'OWN-TEMPLATE' }}"  # ChatML family, marked
    ids, _ = encode(tok, tiny_model_dir, "qwen3", {"messages": CHAT})
    assert "OWN-TEMPLATE" in tok.decode(ids)
    llama = family_tokenizer(tok, "llama3", keep_own=True)  # not of the llama3 family
    ids, _ = encode(llama, tiny_model_dir, "llama3", {"messages": CHAT})
    assert "OWN-TEMPLATE" not in llama.decode(ids)
    assert "<|start_header_id|>" in llama.decode(ids)


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


def test_a_name_ft_has_no_jinja_for_uses_the_tokenizers_own_template(tiny_tokenizer,
                                                                      tiny_model_dir):
    ids, labels = encode(tiny_tokenizer, tiny_model_dir, "qwen3_5", {"messages": CHAT},
                         eot_tokens=["<|im_end|>"])
    assert tiny_tokenizer.decode(ids).startswith("<s><|im_start|>system\n")  # tiny's own
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "<|im_end|>", A2 + "<|im_end|>"]
    bare = copy.deepcopy(tiny_tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no template of its own for qwen3_5 and this "
                                         "tokenizer ships none"):
        encode(bare, tiny_model_dir, "qwen3_5", {"messages": CHAT})


def test_validation_warns_once_for_a_tokenizer_only_name_and_checks_a_local_tokenizer(
        tiny_model_dir, tmp_path):
    import shutil
    import warnings

    from orchestrator.spec.load import SpecWarning, parse_spec
    from trainer.torch_free.errors import SpecError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        parse_spec(_spec(tiny_model_dir, "chat_template: falcon_h1\n"), "spec.yaml")
    assert [str(w.message) for w in caught] == [
        "`chat_template: falcon_h1`: ft has no template of its own for falcon_h1; it uses the "
        "model tokenizer's own chat template (the one the model was trained with)"]
    bare = shutil.copytree(tiny_model_dir, tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(SpecError, match="has no chat template, and `falcon_h1` uses it"):
        parse_spec(_spec(bare, "chat_template: falcon_h1\n"), "spec.yaml")
