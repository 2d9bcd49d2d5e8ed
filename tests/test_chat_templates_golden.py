"""Every named chat template renders exactly the golden text for each conversation of
tests/chat_template_cases.py, and encodes to the ids that text tokenizes to (BOS once, where
the template writes it, never added a second time).

The goldens (tests/fixtures/chat_templates_golden.json) are the formats' output: the text
Axolotl 0.21's template of the same name renders for these conversations, recorded by
`bench/axolotl_template_check.py --goldens tests/fixtures/chat_templates_golden.json`;
`{today}` stands for the date a template writes (mistral_v7_tekken's default system text).
A conversation a format refuses is recorded as `<error TemplateError>`: ft's template must
refuse it too.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from tests.chat_template_cases import cases_for, tiny_chat_tokenizer
from tests.fixtures_tiny import make_cfg
from trainer.data.formats import RowEncoder
from trainer.data.templates import resolve_chat_template
from trainer.torch_free.chat_templates import FAMILIES
from trainer.torch_free.training import DatasetSpec

GOLDEN = json.loads((Path(__file__).parent / "fixtures/chat_templates_golden.json")
                    .read_text(encoding="utf-8"))
CASES = [(name, case) for name in sorted(FAMILIES)
         for case in cases_for(FAMILIES[name].tools, FAMILIES[name].thinking)]


def golden(name: str, case: str) -> str:
    return GOLDEN[name][case].replace("{today}", datetime.date.today().isoformat())


def render(name: str, case: str) -> str:
    family = FAMILIES[name]
    messages, kwargs = cases_for(family.tools, family.thinking)[case]
    tok = tiny_chat_tokenizer(family.markers)
    try:
        return tok.apply_chat_template(messages, chat_template=family.jinja, tokenize=False,
                                       **kwargs)
    except Exception as exc:  # noqa: BLE001 - a refusal is the result being compared
        return f"<error {type(exc).__name__}>"


def test_every_name_and_conversation_has_a_golden():
    assert sorted(GOLDEN) == sorted(FAMILIES)
    for name, family in FAMILIES.items():
        assert sorted(GOLDEN[name]) == sorted(cases_for(family.tools, family.thinking)), name


@pytest.mark.parametrize(("name", "case"), CASES)
def test_rendered_text_is_the_golden(name, case):
    assert render(name, case) == golden(name, case)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the byte-level alphabet)."""
    kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(kept)
    extra = 0
    for b in range(256):
        if b not in kept:
            kept.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(kept, map(chr, chars), strict=True))


def expected_ids(tok: Any, text: str, markers: tuple[str, ...]) -> list[int]:
    """The text tokenized by hand: each special token (the family's markers, BOS, EOS) one
    id, every other byte its byte-level id."""
    specials = sorted({*markers, tok.bos_token, tok.eos_token},
                      key=len, reverse=True)
    table = _bytes_to_unicode()
    vocab = tok.get_vocab()
    ids: list[int] = []
    i = 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit:
            ids.append(vocab[hit])
            i += len(hit)
        else:
            ids.extend(vocab[table[b]] for b in text[i].encode())
            i += 1
    return ids


def encode_row(name: str, tok: Any, messages: list[dict[str, Any]]) -> list[int]:
    ds = {"path": "x.jsonl", "type": "chat_template"}
    cfg = make_cfg(Path("unused"), [ds], chat_template=name)
    out = RowEncoder(DatasetSpec(**ds), cfg, tok)({"messages": [messages]})
    return out["input_ids"][0]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_token_ids_are_the_golden_texts_tokens_with_one_bos_at_most(name):
    family = FAMILIES[name]
    tok = tiny_chat_tokenizer(family.markers)
    case = "multi_turn" if name == "gemma" else "multi_turn_system"  # gemma: no system role
    messages, _ = cases_for(False, False)[case]
    ids = encode_row(name, tok, messages)
    assert ids == expected_ids(tok, golden(name, case), family.markers)
    assert ids.count(tok.bos_token_id) == golden(name, case).count("<s>") <= 1


LLAMA_TOKENIZER_TEMPLATE = (
    "{{ bos_token }}{{ '<|start_header_id|>system<|end_header_id|>\\n\\nCutting Knowledge "
    "Date: December 2023\\nToday Date: ' + strftime_now('%d %b %Y') + '<|eot_id|>' }}"
    "{% for m in messages %}{{ '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' + "
    "m.content + '<|eot_id|>' }}{% endfor %}")


def test_a_named_template_is_that_template_not_the_tokenizers_of_its_family():
    tok = tiny_chat_tokenizer(FAMILIES["llama3"].markers)
    tok.chat_template = LLAMA_TOKENIZER_TEMPLATE
    assert resolve_chat_template("llama3", tok).jinja == FAMILIES["llama3"].jinja
    ids = encode_row("llama3", tok, cases_for(False, False)["system"][0])
    expected = expected_ids(tok, golden("llama3", "system"), FAMILIES["llama3"].markers)
    assert ids == expected  # no date header
    # `tokenizer_default` and a fallback name are the tokenizer's, when it has one
    assert resolve_chat_template("tokenizer_default", tok).jinja == LLAMA_TOKENIZER_TEMPLATE
    assert resolve_chat_template("tokenizer_default_fallback_chatml", tok).jinja == \
        LLAMA_TOKENIZER_TEMPLATE
    tok.chat_template = None
    assert resolve_chat_template("tokenizer_default_fallback_llama3", tok).jinja == \
        FAMILIES["llama3"].jinja


def _doc_block(page: str, name: str) -> str:
    import re

    return re.search(f"<!-- {name}:start -->(.*?)<!-- {name}:end -->", page, re.S).group(1)


def test_the_docs_list_every_name_the_code_knows_and_what_it_renders():
    import re

    from trainer.torch_free.chat_templates import MULTIMODAL, TOKENIZER_ONLY

    page = (Path(__file__).parents[1] / "docs/chat-templates.md").read_text(encoding="utf-8")
    rows = re.findall(r"^- `([^`]+)`(?: \(\*(.*?)\*\))?: (.*)$", _doc_block(page, "names"),
                      re.M)
    marks = {name: ", ".join(w for w, on in (("tools", f.tools), ("thinking", f.thinking))
                             if on) for name, f in FAMILIES.items()}
    assert rows == [(name, marks[name], f.renders) for name, f in FAMILIES.items()]
    assert re.findall(r"`([^`]+)`", _doc_block(page, "tokenizer-only")) == sorted(TOKENIZER_ONLY)
    assert re.findall(r"`([^`]+)`", _doc_block(page, "multimodal")) == sorted(MULTIMODAL)


def test_validate_accepts_exactly_the_documented_names():
    from trainer.torch_free.chat_templates import MULTIMODAL, TOKENIZER_ONLY, choice_problem

    for name in [*FAMILIES, *TOKENIZER_ONLY, "tokenizer_default", "jinja",
                 "tokenizer_default_fallback_chatml", "tokenizer_default_fallback_exaone4"]:
        assert choice_problem(name) is None, name
    for name in [*MULTIMODAL, "vicuna", "tokenizer_default_fallback_vicuna",
                 "tokenizer_default_fallback_jinja"]:
        assert choice_problem(name), name


# Axolotl 0.21's template names (its utils/chat_templates/templates/*.jinja), as facts.
AXOLOTL_021_TEMPLATES = [
    "alpaca", "aya", "chatml", "cohere", "command_a", "command_a_rag", "command_a_tool_use",
    "deepseek_v2", "deepseek_v3", "exaone", "exaone4", "falcon_h1", "gemma", "gemma3",
    "gemma3n", "gemma4", "gemma4_unified", "jamba", "llama3", "llama3_2_vision", "llama4",
    "llava", "metharme", "mistral_v1", "mistral_v2v3", "mistral_v3_tekken",
    "mistral_v7_tekken", "nemotron_h", "phi_3", "phi_35", "phi_4", "pixtral", "qwen2_vl",
    "qwen3", "qwen3_5", "qwen_25"]


def test_every_axolotl_template_name_is_ft_s_own_or_refused_as_multimodal():
    from trainer.torch_free.chat_templates import MULTIMODAL, TOKENIZER_ONLY

    assert sorted([*FAMILIES, *MULTIMODAL]) == AXOLOTL_021_TEMPLATES
    assert not TOKENIZER_ONLY


def test_an_unknown_name_is_an_error_listing_every_name():
    from trainer.torch_free.chat_templates import choice_problem

    problem = choice_problem("vicuna")
    assert all(f" {name}," in problem or f" {name} " in problem for name in FAMILIES)


def test_the_named_template_becomes_the_tokenizers_own_so_the_saved_model_renders_it(
        tiny_model_dir, tmp_path):
    from trainer.models.load import load_tokenizer

    cfg = make_cfg(tiny_model_dir, [{"path": "x.jsonl", "type": "completion"}],
                   chat_template="llama3")  # the tiny tokenizer lacks <|eot_id|>: not needed
    tok = load_tokenizer(cfg)
    assert tok.chat_template == FAMILIES["llama3"].jinja
    tok.save_pretrained(tmp_path)
    assert "<|start_header_id|>" in (tmp_path / "chat_template.jinja").read_text()
    own = load_tokenizer(make_cfg(tiny_model_dir, [{"path": "x.jsonl", "type": "completion"}],
                                  chat_template="tokenizer_default"))
    assert "<|im_start|>" in own.chat_template  # the tiny tokenizer's own, kept


def test_mistral_v7_writes_todays_date_only_without_a_system_turn():
    tok = tiny_chat_tokenizer(FAMILIES["mistral_v7_tekken"].markers)
    messages = cases_for(False, False)["no_system"][0]
    today = datetime.date.today().isoformat()
    assert today in tok.decode(encode_row("mistral_v7_tekken", tok, messages))
    ds = {"path": "x.jsonl", "type": "chat_template"}
    cfg = make_cfg(Path("unused"), [ds], chat_template="mistral_v7_tekken",
                   default_system_message="Be brief.")
    ids = RowEncoder(DatasetSpec(**ds), cfg, tok)({"messages": [messages]})["input_ids"][0]
    assert today not in tok.decode(ids)
    assert "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT]" in tok.decode(ids)
