"""Which chat tokens train: golden masks per rule, as Axolotl 0.21 trains them.

Each case encodes one conversation with a tiny offline tokenizer dressed as a family
(tests/chat_mask_cases.py) and compares the trained text, one string per contiguous trained
run, with the expected one. `chatml` is the family whose closing token (`<|im_end|>`) is
not EOS (`</s>`); in `chatml_eos`, `llama3` and `qwen3` the closing token is EOS. The same
cases run against Axolotl's own code in bench/axolotl_mask_check.py (results in
bench/results/2026-12-07-axolotl-masks.jsonl).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from tests import fixtures_tiny
from tests.chat_mask_cases import (
    A1,
    A2,
    EDGES,
    PLAIN,
    R2,
    SYSTEM,
    U1,
    U2,
    family_tokenizer,
    inline_thinking,
    sharegpt,
    thinking_template,
    with_detail,
    with_flags,
    with_parts,
    with_reasoning,
    with_tool_call,
)
from tests.fixtures_tiny import make_cfg, trained_runs
from trainer.data.formats import RowEncoder
from trainer.data.templates import resolve_chat_template
from trainer.torch_free.training import DatasetSpec

tiny_model_dir = fixtures_tiny.tiny_model_dir
tiny_tokenizer = fixtures_tiny.tiny_tokenizer

CLOSER = {"chatml": "<|im_end|>", "chatml_eos": "<|im_end|>", "llama3": "<|eot_id|>",
          "qwen3": "<|im_end|>"}
EOS_CLOSES = {"chatml": False, "chatml_eos": True, "llama3": True, "qwen3": True}
NAMED = {"chatml": "chatml", "chatml_eos": "chatml", "llama3": "llama3", "qwen3": "qwen3"}
EOT = "eot"  # stands for `eot_tokens: [the family's closing token]` in the table


def encode(tok: Any, model_dir: Any, template: str, conv: list[dict[str, Any]],
           ds: dict[str, Any] | None = None, **top: Any) -> tuple[list[int], list[int]]:
    spec = {"path": "x.jsonl", "type": "chat_template", **(ds or {})}
    cfg = make_cfg(model_dir, [spec], chat_template=template, **top)
    column = spec.get("field_messages", "messages")
    out = RowEncoder(DatasetSpec(**spec), cfg, tok)({column: [copy.deepcopy(conv)]})
    return out["input_ids"][0], out["labels"][0]


def expected_runs(rule: str, e: str, eos_closes: bool) -> list[str]:
    """The trained text for `rule`; `e` is the closing token, `eos_closes` whether it is EOS
    (then it trains by default, else only when `eot_tokens` names it)."""
    d = e if eos_closes else ""
    return {
        "default": [A1 + d, A2 + d],
        "train_on_eos=turn": [A1 + d, A2 + d],
        "train_on_eos=last": [A1, A2 + d],
        "train_on_eos=all": [e, e, A1 + e, e, A2 + e] if eos_closes else [A1, A2],
        "train_on_eos=none": [A1, A2],
        "eot_tokens": [A1 + e, A2 + e],
        "eot_tokens+train_on_eot=last": [A1, A2 + e],
        "eot_tokens+train_on_eot=all": [e, e, A1 + e, e, A2 + e],
        "eot_tokens+train_on_eot=none": [A1, A2],
        "roles_to_train=[assistant,user]": [U1 + d, A1 + d, U2 + d, A2 + d],
        "roles_to_train=[assistant,user]+eot": [U1 + e, A1 + e, U2 + e, A2 + e],
        "train_on_inputs+eot": [SYSTEM + e, U1 + e, A1 + e, U2 + e, A2 + e],
        "message_field_training+eot": [U2 + e, A2 + e],
        "message_field_training_detail": [A1 + d, " is cold." + d],
    }[rule]


RULES: dict[str, tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]] = {
    "default": ({}, {}, PLAIN),
    **{f"train_on_eos={m}": ({"train_on_eos": m}, {}, PLAIN)
       for m in ("turn", "last", "all", "none")},
    "eot_tokens": ({}, {EOT: True}, PLAIN),
    **{f"eot_tokens+train_on_eot={m}": ({"train_on_eot": m, "train_on_eos": m}, {EOT: True},
                                        PLAIN) for m in ("last", "all", "none")},
    "roles_to_train=[assistant,user]": ({"roles_to_train": ["assistant", "user"]}, {}, PLAIN),
    "roles_to_train=[assistant,user]+eot": ({"roles_to_train": ["assistant", "user"]},
                                            {EOT: True}, PLAIN),
    "train_on_inputs+eot": ({}, {EOT: True, "train_on_inputs": True}, PLAIN),
    "message_field_training+eot": ({"message_field_training": "training"}, {EOT: True},
                                   with_flags()),
    "message_field_training_detail": ({"message_field_training_detail": "training_detail"},
                                      {}, with_detail()),
}


def _top(fields: dict[str, Any], family: str) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if k != EOT}
    if fields.get(EOT):
        out["eot_tokens"] = [CLOSER[family]]
    return out


@pytest.mark.parametrize("family", sorted(CLOSER))
@pytest.mark.parametrize("source", ["tokenizer_default", "named"])
def test_every_rule_trains_the_golden_tokens(tiny_tokenizer, tiny_model_dir, family, source):
    """One test per family and template source (the rules loop inside: one tokenizer build)."""
    tok = family_tokenizer(tiny_tokenizer, family)
    if source == "named":
        tok.chat_template = None  # so ft's own template of that name renders
        template = NAMED[family]
    else:
        template = "tokenizer_default"
    got, want = {}, {}
    for rule, (ds, top, conv) in RULES.items():
        ids, labels = encode(tok, tiny_model_dir, template, conv, ds, **_top(top, family))
        got[rule] = trained_runs(tok, ids, labels)
        want[rule] = expected_runs(rule, CLOSER[family], EOS_CLOSES[family])
    assert got == want


THINK = "\n</think>\n\n"  # what the thinking template writes between reasoning and answer


@pytest.mark.parametrize(("case", "ds", "template_key", "conv", "expected"), [
    ("reasoning trains with its answer", {}, "reasoning_content", with_reasoning(),
     [A1 + "<|im_end|>", R2 + THINK + A2 + "<|im_end|>"]),
    ("no reasoning: the empty think block stays masked", {}, "reasoning_content", PLAIN,
     [A1 + "<|im_end|>", A2 + "<|im_end|>"]),
    ("field_thinking names the message key", {"field_thinking": "thinking"},
     "reasoning_content", with_reasoning("thinking"),
     [A1 + "<|im_end|>", R2 + THINK + A2 + "<|im_end|>"]),
    ("template_thinking_key names the template's variable",
     {"template_thinking_key": "thinking"}, "thinking", with_reasoning(),
     [A1 + "<|im_end|>", R2 + THINK + A2 + "<|im_end|>"]),
    ("both renamed", {"field_thinking": "thought", "template_thinking_key": "thinking"},
     "thinking", with_reasoning("thought"),
     [A1 + "<|im_end|>", R2 + THINK + A2 + "<|im_end|>"]),
    ("split_thinking moves <think> blocks to the reasoning key", {"split_thinking": True},
     "reasoning_content", inline_thinking(),
     [A1 + "<|im_end|>", R2 + THINK + A2 + "<|im_end|>"]),
    ("a character detail trains the content alone, not the reasoning",
     {"message_field_training_detail": "training_detail"}, "reasoning_content",
     [*with_reasoning()[:4], {**with_detail()[4], "reasoning_content": R2}],
     [A1 + "<|im_end|>", " is cold.<|im_end|>"]),
])
def test_thinking_content_trains_as_part_of_the_assistant_turn(
        tiny_tokenizer, tiny_model_dir, case, ds, template_key, conv, expected):
    tok = family_tokenizer(tiny_tokenizer, "qwen3")
    tok.chat_template = thinking_template(template_key)
    ids, labels = encode(tok, tiny_model_dir, "tokenizer_default", conv, ds)
    assert trained_runs(tok, ids, labels) == expected, case
    # The first answer comes before the last user message: its reasoning is not written.
    assert "The user asks about the sea." not in tok.decode(ids)


@pytest.mark.parametrize(("family", "expected"), [
    # The first answer's first part is `train: false`; the second answer's parts carry no
    # flag, but its reasoning's parts do, and then (as in Axolotl) only the reasoning's
    # trained part trains of that turn, with the closing token.
    ("qwen3", [" is big.<|im_end|>", " frozen water.", "<|im_end|>"]),
    ("chatml", [" is big."]),  # writes no reasoning; <|im_end|> is not EOS here
])
def test_content_parts_marked_untrained_stay_masked(tiny_tokenizer, tiny_model_dir, family,
                                                   expected):
    tok = family_tokenizer(tiny_tokenizer, family)
    ids, labels = encode(tok, tiny_model_dir, "tokenizer_default", with_parts())
    assert trained_runs(tok, ids, labels) == expected
    assert "The ocean is big." in tok.decode(ids)  # the parts are joined


def test_without_split_thinking_an_inline_think_block_is_content(tiny_tokenizer,
                                                                  tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "qwen3")
    conv = inline_thinking()[:3]
    ids, labels = encode(tok, tiny_model_dir, "tokenizer_default", conv)
    assert trained_runs(tok, ids, labels) == [conv[2]["content"] + "<|im_end|>"]


@pytest.mark.parametrize(("family", "edge", "expected"), [
    ("chatml", "padded", [f"  {A1}\n<|im_end|>"]),  # written as is: trained as is
    ("llama3", "padded", [A1 + "<|eot_id|>"]),  # the template trims: trained trimmed
    ("chatml", "ends_with_user", [A1 + "<|im_end|>"]),
    ("chatml", "empty_answer", [A2 + "<|im_end|>"]),
])
def test_edges_of_turns(tiny_tokenizer, tiny_model_dir, family, edge, expected):
    tok = family_tokenizer(tiny_tokenizer, family)
    ids, labels = encode(tok, tiny_model_dir, "tokenizer_default", EDGES[edge],
                         eot_tokens=[CLOSER[family]])
    assert trained_runs(tok, ids, labels) == expected


def test_contents_that_start_or_end_like_the_stand_ins_are_found_whole(tiny_tokenizer,
                                                                        tiny_model_dir):
    answer = "~ft turn b~ and \u2045 marks\u2046"
    conv = [PLAIN[1], {"role": "assistant", "content": answer}]
    ids, labels = encode(tiny_tokenizer, tiny_model_dir, "tokenizer_default", conv,
                         eot_tokens=["<|im_end|>"])
    assert trained_runs(tiny_tokenizer, ids, labels) == [answer + "<|im_end|>"]


def test_chat_rows_are_the_templates_tokens_without_an_added_bos(tiny_tokenizer,
                                                                 tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "chatml")
    tok.chat_template = None  # ft's chatml, which writes no BOS
    ids, _ = encode(tok, tiny_model_dir, "chatml", PLAIN)
    text = tok.apply_chat_template(PLAIN, chat_template=resolve_chat_template("chatml", tok).jinja,
                                   tokenize=False)
    assert ids == tok(text, add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in ids  # the tokenizer adds BOS to plain text; not here


def test_eos_in_eot_tokens_needs_one_mode_for_both(tiny_tokenizer, tiny_model_dir):
    tok = family_tokenizer(tiny_tokenizer, "chatml_eos")
    with pytest.raises(ValueError, match=r"`eot_tokens` includes EOS \(<\|im_end\|>\), so "
                                         r"`train_on_eos` \(turn\) and `train_on_eot` \(all\)"):
        encode(tok, tiny_model_dir, "tokenizer_default", PLAIN, {"train_on_eot": "all"},
               eot_tokens=["<|im_end|>", "<|im_start|>"])


def test_warnings_for_closing_tokens_that_cannot_train(tiny_tokenizer, tiny_model_dir, caplog):
    tok = family_tokenizer(tiny_tokenizer, "chatml")
    with caplog.at_level(logging.WARNING, logger="ft.data"):
        encode(tok, tiny_model_dir, "tokenizer_default", PLAIN)
        encode(tok, tiny_model_dir, "tokenizer_default", PLAIN,
               eot_tokens=["<|im_end|>", "<pad>"])
    assert [r.getMessage() for r in caplog.records] == [
        "the chat template never writes EOS (</s>), so no turn-closing token is trained; "
        "set `eot_tokens` to the token that ends its turns",
        "`eot_tokens`: the chat template never writes '<pad>'; it closes no turn"]


def test_a_malformed_training_detail_names_the_key(tiny_tokenizer, tiny_model_dir):
    conv = copy.deepcopy(PLAIN)
    conv[4]["spans"] = [{"begin_offset": 0, "train": True}]
    with pytest.raises(ValueError, match="`spans`: each entry needs integer `begin_offset`"):
        encode(tiny_tokenizer, tiny_model_dir, "tokenizer_default", conv,
               {"message_field_training_detail": "spans"})


@pytest.mark.parametrize(("gap", "trained"), [(3, True), (4, False)])
def test_a_closing_token_counts_up_to_three_tokens_after_the_turn(tiny_tokenizer,
                                                                   tiny_model_dir, gap, trained):
    template = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}"
                "{{ '<pad>' * " + str(gap) + " + eos_token + '\\n' }}{% endfor %}")
    ids, labels = encode(tiny_tokenizer, tiny_model_dir, template, PLAIN[1:3])
    assert trained_runs(tiny_tokenizer, ids, labels) == [A1] + (["</s>"] if trained else [])


def test_tool_calls_train_with_the_answer_that_makes_them(tiny_tokenizer, tiny_model_dir):
    template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
                "{% for call in m.tool_calls or [] %}{{ '<call>' + call.function.name + ' ' + "
                "call.function.arguments | tojson + '</call>' }}{% endfor %}"
                "{{ '<|im_end|>\\n' }}{% endfor %}")
    conv = with_tool_call()
    ids, labels = encode(tiny_tokenizer, tiny_model_dir, template, conv,
                         eot_tokens=["<|im_end|>"])
    # the arguments, stored as a JSON string, reach the template as an object
    assert trained_runs(tiny_tokenizer, ids, labels) == [
        '<call>weather {"city": "Oslo"}</call><|im_end|>', A2 + "<|im_end|>"]


def test_role_names_keys_and_field_thinking_with_mappings(tiny_tokenizer, tiny_model_dir):
    """Dataset role names (`gpt`, `model`, `bot`) are assistants, also in roles_to_train;
    every message key reaches the template; a `field_thinking` the spec sets is used even
    with `message_property_mappings`."""
    tok = family_tokenizer(tiny_tokenizer, "qwen3")
    conv = sharegpt(with_reasoning("thought"))
    conv[2]["from"], conv[4]["from"] = "model", "bot"
    conv[3]["mood"] = "curious"
    tok.chat_template = thinking_template().replace(
        "+ m.content + '<|im_end|>", "+ m.content + (m.mood or '') + '<|im_end|>")
    ds = {"message_property_mappings": {"role": "from", "content": "value"},
          "field_thinking": "thought", "roles_to_train": ["gpt"]}
    ids, labels = encode(tok, tiny_model_dir, "tokenizer_default", conv, ds)
    assert trained_runs(tok, ids, labels) == [A1 + "<|im_end|>",
                                              R2 + THINK + A2 + "<|im_end|>"]
    assert U2 + "curious<|im_end|>" in tok.decode(ids)


def test_the_axolotl_comparison_the_docs_cite_is_the_recorded_one():
    """docs/chat-templates.md's figures are those of the recorded comparison run, and every
    case that differs from Axolotl has a stated reason."""
    import json

    from tests.cli_runner import REPO

    rows = [json.loads(line) for line in (REPO / "bench/results/2026-12-07-axolotl-masks.jsonl")
            .read_text().splitlines()]
    equal = sum(r["equal"] for r in rows)
    assert all(r["equal"] or r["known_divergence"] for r in rows)
    page = " ".join((REPO / "docs/chat-templates.md").read_text().split())
    assert (f"{equal} of {len(rows)} cases identical in token ids and labels; the other "
            f"{len(rows) - equal} are the two differences above") in page
    assert {r["known_divergence"] for r in rows if not r["equal"]} <= {
        "ft maps `field_thinking` whenever the spec names it; Axolotl ignores it when "
        "`message_property_mappings` is set",
        "ft hands the template every message key; Axolotl only those its template analyzer "
        "finds in the template, which misses this template's reads"}
