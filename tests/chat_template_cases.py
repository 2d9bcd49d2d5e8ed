"""The conversations every named chat template is rendered for, by the golden tests
(tests/test_chat_templates_golden.py) and by the comparison with Axolotl's own templates
(bench/axolotl_template_check.py): one definition, so both check the same inputs."""

from __future__ import annotations

from typing import Any

SYSTEM = "You are a concise assistant."
U1 = "Tell me about the ocean."
A1 = "The ocean covers most of the earth."
U2 = "And snow?"
A2 = "Snow is frozen water."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]},
    },
}
# A schema with every kind of property a tool declaration can hold.
FORECAST_TOOL = {
    "type": "function",
    "function": {
        "name": "forecast",
        "description": "Forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name."},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "array", "items": {"type": "integer"},
                         "description": "Days ahead."},
                "hours": {"type": "array", "items": {"type": "object", "properties": {
                    "at": {"type": "integer"}}, "required": ["at"]}},
                "options": {"type": "object", "properties": {"verbose": {"type": "boolean"}},
                            "required": ["verbose"]},
                "note": {"type": "string", "nullable": True},
            },
            "required": ["city", "days"],
        },
    },
}
RICH_CALL = {"type": "function", "id": "call67890", "function": {
    "name": "forecast", "arguments": {"city": "Oslo", "days": [1, 2], "unit": "c",
                                      "options": {"verbose": True}}}}
# Mistral's formats need 9-character call ids; DeepSeek's take the arguments as a JSON string.
CALL = {"type": "function", "id": "call12345", "function": {"name": "get_weather",
                                                           "arguments": {"city": "Paris"}}}
CALL_JSON = {"type": "function", "id": "call12345",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def _u(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _a(text: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **extra}


_SYS = {"role": "system", "content": SYSTEM}

# name -> (messages, apply_chat_template keyword arguments)
BASIC: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "system": ([_SYS, _u(U1), _a(A1)], {}),
    "no_system": ([_u(U1), _a(A1)], {}),
    "multi_turn": ([_u(U1), _a(A1), _u(U2), _a(A2)], {}),
    "multi_turn_system": ([_SYS, _u(U1), _a(A1), _u(U2), _a(A2)], {}),
    "generation_prompt": ([_SYS, _u(U1)], {"add_generation_prompt": True}),
    # OpenAI content parts instead of strings.
    "text_parts": ([{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
                    {"role": "user", "content": [{"type": "text", "text": f"{U1} "},
                                                 {"type": "text", "text": "Briefly."}]},
                    {"role": "assistant", "content": [{"type": "text", "text": f" {A1}"}]},
                    {"role": "user", "content": [{"type": "text", "text": U2}]}],
                   {"add_generation_prompt": True}),
    # Leading/trailing whitespace: which families trim or strip contents.
    "padded": ([{"role": "system", "content": f" {SYSTEM}\n"}, _u(f"\n{U1} "), _a(f" {A1}\n"),
                _u(U2), _a(f"{A2}  ")], {}),
}


def _tool_chat(call: dict[str, Any]) -> list[dict[str, Any]]:
    return [_u("Weather in Paris?"), _a("", tool_calls=[call]),
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather",
             "content": "Sunny, 21 C"},
            _a("It is sunny in Paris.")]


TOOLS: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "tools": (_tool_chat(CALL), {"tools": [WEATHER_TOOL]}),
    "tools_json_arguments": (_tool_chat(CALL_JSON), {"tools": [WEATHER_TOOL]}),
    "tools_rich": ([_SYS, _u("Forecast for Oslo?"),
                    _a("Let me check.", tool_calls=[RICH_CALL, CALL],
                       reasoning_content="Need data."),
                    {"role": "tool", "tool_call_id": "call67890", "content": "Rain"},
                    _a("Rain in Oslo."), _u("Thanks")],
                   {"tools": [WEATHER_TOOL, FORECAST_TOOL], "add_generation_prompt": True}),
    "tools_thinking": ([_u("Forecast for Oslo?"),
                        _a("", tool_calls=[RICH_CALL], reasoning_content="Need data."),
                        {"role": "tool", "tool_call_id": "call67890", "content": "Rain"},
                        _a("<|channel>thought\nDone.<channel|>Rain in Oslo.")],
                       {"tools": [FORECAST_TOOL]}),
    # Retrieval documents and output modes (Jamba writes them in a system message).
    "documents": ([_SYS, _u(U1), _a(A1, citations=[{"document_id": 0}]), _u(U2)],
                  {"documents": [{"title": "Oceans", "text": "Oceans are big.",
                                  "source": "atlas"}, {"text": "Snow is cold."}],
                   "knobs": {"is_set": True, "citation_mode": "fast",
                             "response_format": "json_object"},
                   "add_generation_prompt": True}),
    # Two calls answered by two consecutive tool turns, a system turn mid-way, Cohere's
    # options (citations, strict safety, a tool plan) and documents beside tools.
    "tools_two_results": ([_SYS, _u("Forecast for Oslo?"),
                           _a("", tool_calls=[RICH_CALL, CALL], tool_plan="Look both up."),
                           {"role": "tool", "tool_call_id": "call67890", "content": "Rain"},
                           {"role": "tool", "tool_call_id": "call12345", "content": "Sun"},
                           {"role": "system", "content": "Be brief."},
                           _a("Rain in Oslo, sun in Paris.")],
                          {"tools": [WEATHER_TOOL, FORECAST_TOOL], "enable_citations": True,
                           "safety_mode": "strict",
                           "documents": [{"title": "Oceans", "text": "Oceans are big."}]}),
    # The same message twice: a template must place each by its position, not by its value.
    "repeated_messages": ([_u(U1), _a("", tool_calls=[CALL]),
                           {"role": "tool", "tool_call_id": "call12345", "content": "Sunny"},
                           _a(A2), _u(U1), _a(A2)],
                          {"tools": [WEATHER_TOOL], "documents": [{"text": "Snow is cold."}]}),
    "tools_with_system": ([_SYS, *_tool_chat(CALL)], {"tools": [WEATHER_TOOL],
                                                      "tools_in_user_message": False}),
}
THINKING: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "thinking": ([_u(U1), _a(A1, reasoning_content="Water, mostly."), _u(U2),
                  _a(A2, reasoning_content="Ice crystals.")], {}),
    "thinking_in_content": ([_u(U1), _a(f"<think>\nWater, mostly.\n</think>\n\n{A1}"),
                             _u(U2), _a(f"<think>\nIce crystals.\n</think>\n\n{A2}")], {}),
    "thinking_shown": ([_u(U1), _a(A1, reasoning_content="Water, mostly.")],
                       {"skip_think": False}),
    "thinking_enabled": ([_SYS, _u(U1), _a(A1, reasoning_content="Water, mostly."), _u(U2)],
                         {"add_generation_prompt": True, "enable_thinking": True}),
    "thinking_generation_prompt": ([_u(U1)], {"add_generation_prompt": True,
                                             "enable_thinking": False}),
}


def cases_for(tools: bool, thinking: bool) -> dict[str, tuple[list[dict[str, Any]],
                                                                 dict[str, Any]]]:
    return {**BASIC, **(TOOLS if tools else {}), **(THINKING if thinking else {})}


def tiny_chat_tokenizer(markers: tuple[str, ...] = (), bos: str = "<s>",
                        eos: str = "</s>") -> Any:
    """A byte-level tokenizer with no merges (one token per byte) plus the family's marker
    tokens, BOS and EOS as single special tokens: ids are predictable from the text alone.
    Like Llama's, plain encoding adds BOS (so a doubled BOS would show)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([bos, eos, *markers])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos,
                                   additional_special_tokens=list(markers))
    return fast
