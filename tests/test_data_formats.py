"""Every dataset format: the trained tokens, decoded, are exactly the expected text.

Rows are encoded by the same `RowEncoder` that `prepare_data` maps over a dataset, with the
tiny tokenizer (adds BOS on plain encoding; its own chat template also emits BOS; pad != eos;
turns end with `<|im_end|>`, which is not EOS: as in Axolotl it trains only when
`eot_tokens` names it, so the chat tests below that expect it name it).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import fixtures_tiny
from tests.fixtures_tiny import make_cfg, trained_runs
from trainer.data.formats import RowEncoder
from trainer.data.templates import ALPACA_NO_INPUT, ALPACA_WITH_INPUT
from trainer.torch_free.training import DatasetSpec

# The tiny model fixtures (tests/conftest.py may import them as well).
tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer

A1 = "The ocean covers most of the surface of the earth."
A2 = "Snow is frozen water that falls as soft white flakes."
CHAT = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Tell me about the ocean."},
    {"role": "assistant", "content": A1},
    {"role": "user", "content": "And snow?"},
    {"role": "assistant", "content": A2},
]


def encode(tok: Any, model_dir: Any, dataset: dict[str, Any], rows: list[dict[str, Any]],
           **fields: Any) -> list[tuple[list[int], list[int]]]:
    cfg = make_cfg(model_dir, [dataset], **fields)
    batch = {key: [row[key] for row in rows] for key in rows[0]}
    out = RowEncoder(DatasetSpec(**dataset), cfg, tok)(batch)
    return list(zip(out["input_ids"], out["labels"], strict=True))


def one(tok: Any, model_dir: Any, dataset: dict[str, Any], row: dict[str, Any],
        **fields: Any) -> tuple[list[int], list[int]]:
    return encode(tok, model_dir, dataset, [row], **fields)[0]


def assert_single_bos(tok: Any, ids: list[int]) -> None:
    assert ids[0] == tok.bos_token_id
    assert ids.count(tok.bos_token_id) == 1, "BOS appears more than once"


CHAT_DS = {"path": "x.jsonl", "type": "chat_template"}
EOT = {"eot_tokens": ["<|im_end|>"]}


@pytest.mark.parametrize("template", ["tokenizer_default", "chatml"])
def test_chat_trains_exactly_the_assistant_answers_and_their_end_of_turn(
        tiny_tokenizer, tiny_model_dir, template):
    ids, labels = one(tiny_tokenizer, tiny_model_dir, CHAT_DS, {"messages": CHAT},
                      chat_template=template, **EOT)
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "<|im_end|>", A2 + "<|im_end|>"]
    # Chat rows are encoded as rendered (as Axolotl does): tokenizer_default writes BOS
    # itself, chatml has none, and none is added.
    bos = "<s>" if template == "tokenizer_default" else ""
    assert ids.count(tiny_tokenizer.bos_token_id) == (1 if bos else 0)
    assert tiny_tokenizer.eos_token_id not in ids  # chat turns end with <|im_end|>, not EOS
    full = tiny_tokenizer.decode(ids)
    assert full.startswith(bos + "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n")
    assert full.endswith(f"<|im_start|>assistant\n{A2}<|im_end|>\n")


def test_per_dataset_chat_template_overrides_top_level(tiny_tokenizer, tiny_model_dir):
    inline = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}\n"
              "{% endfor %}")
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {**CHAT_DS, "chat_template": inline},
                      {"messages": CHAT}, chat_template="chatml")
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "</s>", A2 + "</s>"]
    assert "<|im_start|>" not in tiny_tokenizer.decode(ids)


def test_sharegpt_style_keys_via_message_property_mappings(tiny_tokenizer, tiny_model_dir):
    conv = [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]),
             "value": m["content"]} for m in CHAT]
    ds = {**CHAT_DS, "field_messages": "conversations",
          "message_property_mappings": {"role": "from", "content": "value"}}
    ids, labels = one(tiny_tokenizer, tiny_model_dir, ds, {"conversations": conv},
                      chat_template="chatml", **EOT)
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "<|im_end|>", A2 + "<|im_end|>"]
    assert "<|im_start|>assistant\n" in tiny_tokenizer.decode(ids)  # gpt -> assistant


def test_legacy_role_and_content_keys_and_custom_roles(tiny_tokenizer, tiny_model_dir):
    names = {"user": "person", "assistant": "bot9", "system": "system"}
    conv = [{"speaker": names[m["role"]], "text": m["content"]} for m in CHAT]
    ds = {**CHAT_DS, "message_field_role": "speaker", "message_field_content": "text",
          "roles": {"assistant": ["bot9"], "user": ["person"]}}
    ids, labels = one(tiny_tokenizer, tiny_model_dir, ds, {"messages": conv},
                      chat_template="chatml", **EOT)
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "<|im_end|>", A2 + "<|im_end|>"]


def test_roles_to_train_adds_user_turns(tiny_tokenizer, tiny_model_dir):
    ds = {**CHAT_DS, "roles_to_train": ["user", "assistant"]}
    ids, labels = one(tiny_tokenizer, tiny_model_dir, ds, {"messages": CHAT},
                      chat_template="chatml", **EOT)
    expected = [m["content"] + "<|im_end|>" for m in CHAT[1:]]
    assert trained_runs(tiny_tokenizer, ids, labels) == expected


@pytest.mark.parametrize(("mode", "expected"), [
    ("none", [A1, A2]),
    ("last", [A1, A2 + "<|im_end|>"]),
    ("all", ["<|im_end|>", "<|im_end|>", A1 + "<|im_end|>", "<|im_end|>", A2 + "<|im_end|>"]),
])
def test_train_on_eos_modes(tiny_tokenizer, tiny_model_dir, mode, expected):
    # <|im_end|> is not EOS here: `train_on_eot` (which follows `train_on_eos`) decides.
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {**CHAT_DS, "train_on_eos": mode},
                      {"messages": CHAT}, chat_template="chatml", **EOT)
    assert trained_runs(tiny_tokenizer, ids, labels) == expected


def test_chat_train_on_inputs_trains_everything_but_bos(tiny_tokenizer, tiny_model_dir):
    """As in Axolotl: every turn trains (system and user too) with its closing token; the
    role headers the template writes between turns stay masked."""
    ids, labels = one(tiny_tokenizer, tiny_model_dir, CHAT_DS, {"messages": CHAT},
                      chat_template="chatml", train_on_inputs=True, **EOT)
    assert trained_runs(tiny_tokenizer, ids, labels) == [m["content"] + "<|im_end|>"
                                                          for m in CHAT]


def test_trimming_template_with_bos_and_eos_as_end_of_turn(tiny_tokenizer, tiny_model_dir):
    """A Llama-3-like template: emits BOS, trims contents, closes assistant turns with EOS."""
    template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] | upper }}: "
                "{{ m['content'] | trim }}{% if m['role'] == 'assistant' %}{{ eos_token }}"
                "{% endif %}\n{% endfor %}")
    conv = [{"role": "user", "content": "  Hi there?  "},
            {"role": "assistant", "content": f"  {A1}\n"}]
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {**CHAT_DS, "chat_template": template},
                      {"messages": conv})
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "</s>"]
    assert_single_bos(tiny_tokenizer, ids)


def test_default_system_message_is_added_when_missing(tiny_tokenizer, tiny_model_dir):
    ids, labels = one(tiny_tokenizer, tiny_model_dir, CHAT_DS, {"messages": CHAT[1:3]},
                      chat_template="chatml", default_system_message="Be brief.", **EOT)
    # chatml writes no BOS and none is added (as Axolotl encodes a chat row)
    assert tiny_tokenizer.decode(ids).startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1 + "<|im_end|>"]


def test_a_template_that_rewrites_contents_trains_what_it_writes(tiny_tokenizer,
                                                                 tiny_model_dir):
    """Turns are found where the render changes, not by searching for the content: a
    template that rewrites contents still trains exactly its assistant turns."""
    template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] | upper }}"
                "{{ eos_token if m['role'] == 'assistant' else '\n' }}{% endfor %}")
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {**CHAT_DS, "chat_template": template},
                      {"messages": CHAT})
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1.upper() + "</s>",
                                                          A2.upper() + "</s>"]


def test_unknown_chat_template_name_lists_the_supported_ones(tiny_tokenizer, tiny_model_dir):
    with pytest.raises(ValueError, match="no chat template named 'vicuna9'.*chatml"):
        one(tiny_tokenizer, tiny_model_dir, CHAT_DS, {"messages": CHAT},
            chat_template="vicuna9")


ALPACA_DS = {"path": "x.jsonl", "type": "alpaca"}


@pytest.mark.parametrize("with_input", [True, False])
def test_alpaca_trains_exactly_output_and_eos(tiny_tokenizer, tiny_model_dir, with_input):
    row = {"instruction": "Describe honey.", "input": "One line." if with_input else "",
           "output": "Honey is made by bees from the nectar of flowers."}
    ids, labels = one(tiny_tokenizer, tiny_model_dir, ALPACA_DS, row)
    assert trained_runs(tiny_tokenizer, ids, labels) == [row["output"] + "</s>"]
    assert_single_bos(tiny_tokenizer, ids)
    template = ALPACA_WITH_INPUT if with_input else ALPACA_NO_INPUT
    prompt = template.format(instruction=row["instruction"], input=row["input"])
    assert tiny_tokenizer.decode(ids) == "<s>" + prompt + row["output"] + "</s>"


def test_alpaca_train_on_inputs_per_dataset(tiny_tokenizer, tiny_model_dir):
    row = {"instruction": "Describe honey.", "input": "", "output": "Sweet."}
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {**ALPACA_DS, "train_on_inputs": True},
                      row)
    assert labels[0] == -100 and labels[1:] == ids[1:]


def test_input_output_trains_exactly_the_labelled_segments(tiny_tokenizer, tiny_model_dir):
    segments = [
        {"text": "Question: what is snow?\n", "label": False},
        {"text": "Answer: ", "label": False},
        {"text": A2, "label": True},
        {"text": "\nQuestion: and a glacier?\nAnswer: ", "label": False},
        {"text": "A glacier is a slow river of ice that shapes valleys.</s>", "label": True},
    ]
    ids, labels = one(tiny_tokenizer, tiny_model_dir, {"path": "x", "type": "input_output"},
                      {"segments": segments})
    assert trained_runs(tiny_tokenizer, ids, labels) == [segments[2]["text"],
                                                          segments[4]["text"]]
    assert ids[-1] == tiny_tokenizer.eos_token_id  # written in the text, parsed as EOS
    assert_single_bos(tiny_tokenizer, ids)


def test_completion_trains_everything_and_chunks(tiny_tokenizer, tiny_model_dir):
    text = " ".join(["The river ran beside the road and out of the town."] * 12)
    pairs = encode(tiny_tokenizer, tiny_model_dir, {"path": "x", "type": "completion"},
                   [{"text": text}], sequence_len=32)
    whole = [tiny_tokenizer.bos_token_id, *tiny_tokenizer(text, add_special_tokens=False)
             ["input_ids"], tiny_tokenizer.eos_token_id]
    assert len(pairs) == -(-len(whole) // 32) > 2
    assert all(len(ids) <= 32 for ids, _ in pairs)
    assert [t for ids, _ in pairs for t in ids] == whole
    labels = [x for _, labs in pairs for x in labs]
    assert labels[0] == -100 and labels[1:] == whole[1:]


def test_completion_custom_field(tiny_tokenizer, tiny_model_dir):
    (ids, labels), = encode(tiny_tokenizer, tiny_model_dir,
                            {"path": "x", "type": "completion", "field": "body"},
                            [{"body": "Snow is cold."}])
    assert trained_runs(tiny_tokenizer, ids, labels) == ["Snow is cold.</s>"]


def test_pretokenized_rows_pass_through(tiny_tokenizer, tiny_model_dir):
    rows = [
        {"input_ids": [1, 50, 51, 52, 3, 3], "attention_mask": [1, 1, 1, 1, 0, 0],
         "labels": [-100, -100, 51, 52, -100, -100]},
        {"input_ids": [1, 60, 61], "attention_mask": None, "labels": None},
    ]
    pairs = encode(tiny_tokenizer, tiny_model_dir, {"path": "x"}, rows)
    assert pairs[0] == ([1, 50, 51, 52], [-100, -100, 51, 52])
    assert pairs[1] == ([1, 60, 61], [1, 60, 61])


def test_unknown_type_is_a_clear_error(tiny_tokenizer, tiny_model_dir):
    with pytest.raises(ValueError, match="unknown dataset type 'sharegpt'"):
        one(tiny_tokenizer, tiny_model_dir, {"path": "x", "type": "sharegpt"}, {"a": 1})
