"""`tokenizer_use_mistral_common: true` on a tiny Mistral with a tekken.json built offline:
mistral-common's chat encoding is the template, ft's chat masks (Axolotl's rules) train the
assistant turns and their EOS, Magistral's thinking parts are encoded between [THINK] and
[/THINK], what cannot be combined with it is refused by name, and the corpus config trains
3 steps."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.fixtures_tiny import trained_runs
from tests.train_helpers import summary
from trainer.torch_free.errors import SpecError

pytest.importorskip("mistral_common", reason="mistral-common comes with ft's [train] extra")

CORPUS = Path(__file__).parent / "fixtures/axolotl/corpus"
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "Six."},
]


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory) -> Path:
    from tests.tiny_mistral_common import build_tiny_mistral

    return build_tiny_mistral(tmp_path_factory.mktemp("tiny-mistral"))


def _parse(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml")


def _spec(model: Path | str, extra: str = "", dataset: str = "") -> str:
    return (f"base_model: {model}\ntokenizer_use_mistral_common: true\ndatasets:\n"
            f"  - path: x.jsonl\n    type: chat_template\n{dataset}" + extra)


def _encode(model: Path, rows: list, extra: str = "", dataset: str = ""):
    from trainer.data.formats import RowEncoder
    from trainer.models.load import load_tokenizer

    cfg = _parse(_spec(model, extra, dataset)).training
    tokenizer = load_tokenizer(cfg)
    out = RowEncoder(cfg.datasets[0], cfg, tokenizer)({"messages": rows})
    return tokenizer, out["input_ids"], out["labels"]


def test_chats_are_encoded_by_mistral_common_and_assistant_turns_trained(tiny_mistral):
    tokenizer, (ids,), (labels,) = _encode(tiny_mistral, [CHAT])
    assert type(tokenizer).__name__ == "MistralCommonBackend"
    assert tokenizer.decode(ids) == ("<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT]"
                                     "[INST]What is 2+2?[/INST]It is 4.</s>"
                                     "[INST]And 3+3?[/INST]Six.</s>")
    # The control tokens are single ids, which tokenizing the text could never give.
    assert ids[:2] == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(
        "[SYSTEM_PROMPT]")]
    assert trained_runs(tokenizer, ids, labels) == ["It is 4.</s>", "Six.</s>"]


def test_a_real_tekken_vocabulary_masks_the_same_way(tmp_path):
    """mistral-common ships Mistral-Nemo's tekken.json (131k tokens, version v3, which moves
    the system prompt into the last user turn); multi-byte characters split across tokens."""
    from importlib.resources import files

    (tmp_path / "tekken.json").symlink_to(files("mistral_common") / "data/tekken_240911.json")
    chat = [*CHAT[:2], {"role": "assistant", "content": "It is 4 — naïve café."}, *CHAT[3:]]
    tokenizer, (ids,), (labels,) = _encode(tmp_path, [chat])
    assert tokenizer.decode(ids) == ("<s>[INST]What is 2+2?[/INST]It is 4 — naïve café.</s>"
                                     "[INST]Be brief.\n\nAnd 3+3?[/INST]Six.</s>")
    assert trained_runs(tokenizer, ids, labels) == ["It is 4 — naïve café.</s>", "Six.</s>"]


def test_train_on_eos_and_roles_follow_fts_chat_rules(tiny_mistral):
    tokenizer, (ids,), (labels,) = _encode(
        tiny_mistral, [CHAT], dataset="    roles_to_train: [user, assistant]\n"
                                      "    train_on_eos: last\n")
    assert trained_runs(tokenizer, ids, labels) == ["What is 2+2?", "It is 4.",
                                                    "And 3+3?", "Six.</s>"]


def test_train_on_inputs_and_message_training_flags_follow_fts_chat_rules(tiny_mistral):
    """`train_on_inputs` trains every turn's text (not the control tokens between them; the
    leading system turn of a Mistral tokenizer is skipped, as Axolotl does); a message's
    `message_field_training` flag wins over both, and an untrained turn's EOS stays out."""
    chat = [*CHAT[:2], {**CHAT[2], "train": False}, *CHAT[3:]]
    tokenizer, (ids,), (labels,) = _encode(
        tiny_mistral, [chat], "train_on_inputs: true\n",
        dataset="    message_field_training: train\n")
    assert trained_runs(tokenizer, ids, labels) == ["What is 2+2?", "And 3+3?", "Six.</s>"]


def test_magistral_thinking_parts_are_encoded_and_trained(tiny_mistral):
    """The turn's trained text is what changes when its content is swapped for a stand-in
    (Axolotl's rule): the thinking block with its [THINK] and [/THINK] tokens, which the
    model must write itself (an inference prompt ends at [/INST]), then the answer."""
    chat = [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "Add them."},
                                              {"type": "text", "text": "It is 4."}]}]
    tokenizer, (ids,), (labels,) = _encode(tiny_mistral, [chat])
    assert tokenizer.decode(ids) == ("<s>[INST]What is 2+2?[/INST][THINK]Add them.[/THINK]"
                                     "It is 4.</s>")
    assert trained_runs(tokenizer, ids, labels) == ["[THINK]Add them.[/THINK]It is 4.</s>"]


@pytest.mark.parametrize(("extra", "dataset", "message"), [
    ("chat_template: chatml\n", "", "mistral-common's own chat encoding is these models' "
     "template; remove `chat_template`"),
    ("", "    chat_template: chatml\n", "remove `chat_template`"),
    ("tokens: ['<x>']\n", "", "a mistral-common vocabulary cannot be changed"),
    ("special_tokens: {pad_token: '<x>'}\n", "", "remove `special_tokens`"),
    ("eot_tokens: ['</s>']\n", "", "closes every assistant turn with EOS"),
    ("tokenizer_use_fast: false\n", "", "these choose among Hugging Face tokenizers"),
    ("chat_template_kwargs: {enable_thinking: true}\n", "",
     "reads `reasoning_effort` only, so `enable_thinking` would change nothing"),
])
def test_what_mistral_common_cannot_combine_with_is_refused(extra, dataset, message):
    with pytest.raises(SpecError) as info:
        _parse(_spec("mistralai/Magistral-Small-2509", extra, dataset))
    assert any(message in p.message for p in info.value.problems), info.value.problems


def test_a_chat_mistral_common_refuses_is_a_data_error_naming_why(tiny_mistral):
    """Magistral's v13 tokenizer has no reasoning effort; a chat ending on the user's turn
    has no answer to train."""
    with pytest.raises(ValueError, match="mistral-common cannot encode this chat: "
                       "reasoning_effort=.* is not supported for this model "
                       "\\(`chat_template_kwargs`\\)"):
        _encode(tiny_mistral, [CHAT], "chat_template_kwargs: {reasoning_effort: high}\n")
    with pytest.raises(ValueError, match="mistral-common cannot encode this chat: Expected "
                       "last role Assistant"):
        _encode(tiny_mistral, [CHAT[:2]])


@pytest.mark.parametrize(("content", "message"), [
    ([{"type": "image_url", "image_url": "x.png"}], "content part of type 'image_url'"),
    ([{"type": "text", "text": "4."}, {"type": "thinking", "thinking": "Add."}],
     "a `thinking` part after a `text` part"),
])
def test_content_parts_mistral_common_text_rows_cannot_take_are_data_errors(
        tiny_mistral, content, message):
    with pytest.raises(ValueError, match=message):
        _encode(tiny_mistral, [[CHAT[1], {"role": "assistant", "content": content}]])


def test_other_dataset_types_are_refused_with_mistral_common():
    text = _spec("mistralai/Magistral-Small-2509").replace("type: chat_template", "type: alpaca")
    with pytest.raises(SpecError, match="`type: alpaca` text would lose its control tokens"):
        _parse(text)


def test_a_directory_without_a_mistral_tokenizer_file_is_a_clear_error(tiny_model_dir):
    from trainer.models.load import load_tokenizer
    from trainer.torch_free.errors import UserError

    with pytest.raises(UserError, match="has no mistral-common tokenizer file"):
        load_tokenizer(_parse(_spec(tiny_model_dir)).training)


def test_magistral_corpus_config_trains_on_a_tiny_mistral(tiny_mistral, tmp_path):
    """Model, data and output swapped; 4-bit QLoRA as written, on the CPU; then merge-lora
    and inference."""
    path = tiny_corpus_copy("magistral-mistral-common.yml", tmp_path, tiny_mistral,
                            data="chat.jsonl", max_steps=3, sequence_len=256,
                            gradient_accumulation_steps=1)
    result = run_ft("train", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(tmp_path / "out")["global_step"] == 3
    assert (tmp_path / "out" / "tekken.json").is_file()  # the tokenizer ships with the adapter
    _merge_and_generate(path)


def _merge_and_generate(path: Path) -> None:
    """merge-lora keeps the tekken.json; inference prompts through mistral-common's chat
    encoding in its inference mode (the chat ends with the user's turn)."""
    from trainer.models.inference import generate, load_for_inference
    from trainer.models.merge_lora import merge_lora

    cfg = _parse(path.read_text()).training
    merged = merge_lora(cfg, on_cpu=True)
    assert (merged / "tekken.json").is_file()
    model, tokenizer = load_for_inference(cfg, use_merged=True)
    assert type(tokenizer).__name__ == "MistralCommonBackend"
    assert tokenizer.mode.value == "test"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                           return_dict=False)
    assert tokenizer.decode(prompt) == "<s>[INST]Hi[/INST]"
    assert isinstance(generate(model, tokenizer, "Hi", max_new_tokens=2), str)
