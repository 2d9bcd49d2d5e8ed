"""Mistral's instruct layouts: `[INST] ... [/INST]` user turns, answers closed by EOS."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

# A content's text: a string as is, content parts by their `text` blocks.
_TEXT = (r"{%- macro text(c) -%}{{- c if c is string else c | selectattr('type', 'equalto', "
         r"'text') | map(attribute='text') | join('') -}}{%- endmacro -%}")

_ALTERNATE_ERROR = (r"raise_exception('After the optional system message, conversation roles "
                    r"must alternate user/assistant/user/assistant/...')")

# v1: ` [INST] ` / ` [/INST]` with spaces on both sides; the system text opens the first user
# turn; an answer is a space, the content and EOS.
MISTRAL_V1 = (
    _TEXT +
    r"{%- set own = messages[0].role == 'system' -%}"
    r"{{- bos_token -}}"
    r"{%- for m in (messages[1:] if own else messages) -%}"
    r"{%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}{{- " + _ALTERNATE_ERROR +
    r" -}}{%- endif -%}"
    r"{%- if m.role == 'user' -%}"
    r"{{- ' [INST] ' + (text(messages[0].content) + '\n\n' if own and loop.first else '')"
    r" + text(m.content) + ' [/INST]' -}}"
    r"{%- elif m.role == 'assistant' -%}{{- ' ' + text(m.content) + eos_token -}}"
    r"{%- else -%}{{- raise_exception('Only user and assistant roles are supported, with the "
    r"exception of an initial optional system message!') -}}{%- endif -%}"
    r"{%- endfor -%}")


def _v3(space: str, answer: str) -> str:
    """v2/v3 (space after each opening tag) and v3 tekken (none): the system text goes into
    the LAST user turn only (so a conversation that ends with an answer has none, as in
    these models' format); the tool list precedes the last user turn; tool call ids are 9
    characters."""
    return (
        _TEXT +
        r"{%- set own = messages[0].role == 'system' -%}"
        r"{%- set turns = messages[1:] if own else messages -%}"
        r"{%- set tools = tools if tools is defined else none -%}"
        r"{%- set users = turns | selectattr('role', 'equalto', 'user') | list -%}"
        r"{%- set st = namespace(n=0) -%}"
        r"{%- for m in turns if not (m.role in ('tool', 'tool_results') or "
        r"(m.tool_calls is defined and m.tool_calls is not none)) -%}"
        r"{%- if (m.role == 'user') != (st.n % 2 == 0) -%}{{- " + _ALTERNATE_ERROR +
        r" -}}{%- endif -%}{%- set st.n = st.n + 1 -%}{%- endfor -%}"
        r"{{- bos_token -}}"
        r"{%- for m in turns -%}"
        r"{%- if m.role == 'user' -%}"
        r"{%- if tools is not none and m == users[-1] -%}"
        r"{{- '[AVAILABLE_TOOLS]" + space + r"[' -}}"
        r"{%- for t in tools -%}"
        r"""{{- '{"type": "function", "function": {' -}}"""
        r"{%- for key, value in t.function.items() if key != 'return' -%}"
        r"""{{- '"' + key + '": ' + ('"' + value + '"' if value is string else value | tojson)"""
        r" + ('' if loop.last else ', ') -}}{%- endfor -%}"
        r"{{- '}}' + (']' if loop.last else ', ') -}}"
        r"{%- endfor -%}{{- '[/AVAILABLE_TOOLS]' -}}{%- endif -%}"
        r"{{- '[INST]" + space + r"' + (text(messages[0].content) + '\n\n' if own and "
        r"loop.last else '') + text(m.content) + '[/INST]' -}}"
        r"{%- elif m.tool_calls is defined and m.tool_calls is not none -%}"
        r"{{- '[TOOL_CALLS]" + space + r"[' -}}"
        r"{%- for c in m.tool_calls -%}"
        r"{{- (c.function | tojson)[:-1] -}}"
        r"{%- if c.id is not defined or c.id | length != 9 -%}{{- raise_exception('Tool call "
        r"IDs should be alphanumeric strings with length 9!') -}}{%- endif -%}"
        r"""{{- ', "id": "' + c.id + '"}' + (']' + eos_token if loop.last else ', ') -}}"""
        r"{%- endfor -%}"
        r"{%- elif m.role == 'assistant' -%}{{- " + answer + r" + eos_token -}}"
        r"{%- elif m.role in ('tool', 'tool_results') -%}"
        r"{%- set result = m.content.content if m.content is defined and m.content.content is "
        r"defined else m.content -%}"
        r"""{{- '[TOOL_RESULTS]""" + space + r"""{"content": ' + result | string + ', ' -}}"""
        r"{%- if m.tool_call_id is not defined or m.tool_call_id | length != 9 -%}"
        r"{{- raise_exception('Tool call IDs should be alphanumeric strings with length 9!') -}}"
        r"{%- endif -%}"
        r"""{{- '"call_id": "' + m.tool_call_id + '"}[/TOOL_RESULTS]' -}}"""
        r"{%- else -%}{{- raise_exception('Only user and assistant roles are supported, with "
        r"the exception of an initial optional system message!') -}}{%- endif -%}"
        r"{%- endfor -%}")


# v7 tekken (Mistral Small 3): `[SYSTEM_PROMPT]...[/SYSTEM_PROMPT]` first, the model's
# default system text (with today's date) when there is none.
_V7_DEFAULT = (
    "You are Mistral Small 3, a Large Language Model (LLM) created by Mistral AI, a French "
    "startup headquartered in Paris.\\nYour knowledge base was last updated on 2023-10-01. "
    "The current date is ' + strftime_now('%Y-%m-%d') + '.\\n\\nWhen you\\'re not sure about "
    "some information, you say that you don\\'t have the information and don\\'t make up "
    "anything.\\nIf the user\\'s question is not clear, ambiguous, or does not provide enough "
    "context for you to accurately answer the question, you do not try to answer it right "
    "away and you rather ask the user to clarify their request (e.g. \"What are some good "
    "restaurants around me?\" => \"Where are you?\" or \"When is the next flight to Tokyo\" "
    "=> \"Where do you travel from?\")")
MISTRAL_V7 = (
    _TEXT +
    r"{{- bos_token -}}"
    r"{%- set own = messages[0].role == 'system' -%}"
    r"{{- '[SYSTEM_PROMPT]' + (text(messages[0].content) if own else '" + _V7_DEFAULT +
    r"') + '[/SYSTEM_PROMPT]' -}}"
    r"{%- for m in (messages[1:] if own else messages) -%}"
    r"{%- if m.role == 'user' -%}{{- '[INST]' -}}"
    r"{%- if m.content is string -%}{{- m.content -}}{%- else -%}"
    r"{%- for b in m.content -%}{%- if b['type'] == 'text' -%}{{- b['text'] -}}"
    r"{%- elif b['type'] in ('image', 'image_url') -%}{{- '[IMG]' -}}"
    r"{%- else -%}{{- raise_exception('Only text and image blocks are supported in message "
    r"content!') -}}{%- endif -%}{%- endfor -%}{%- endif -%}{{- '[/INST]' -}}"
    r"{%- elif m.role == 'system' -%}"
    r"{{- '[SYSTEM_PROMPT]' + text(m.content) + '[/SYSTEM_PROMPT]' -}}"
    r"{%- elif m.role == 'assistant' -%}{{- text(m.content) + eos_token -}}"
    r"{%- else -%}{{- raise_exception('Only user, system and assistant roles are supported!')"
    r" -}}{%- endif -%}{%- endfor -%}")

_INST = ("[INST]", "[/INST]")
_TOOL_MARKERS = ("[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[TOOL_RESULTS]",
                 "[/TOOL_RESULTS]")
FAMILIES = {
    "mistral_v1": Family(MISTRAL_V1, (), "Mistral v1: BOS, ` [INST] ` user ` [/INST]`, "
                         "` ` answer + EOS; the system text opens the first user turn", _INST),
    "mistral_v2v3": Family(_v3(" ", r"' ' + text(m.content) | trim"), (),
                           "Mistral v2/v3: BOS, `[INST] ` user `[/INST]`, ` ` trimmed answer + "
                           "EOS; the system text goes into the last user turn only; "
                           "`[AVAILABLE_TOOLS]`, `[TOOL_CALLS]`, `[TOOL_RESULTS]`",
                           _INST + _TOOL_MARKERS, tools=True),
    "mistral_v3_tekken": Family(_v3("", "text(m.content)"), (),
                                "Mistral v3 tekken (Nemo): as `mistral_v2v3` without the "
                                "spaces", _INST + _TOOL_MARKERS, tools=True),
    "mistral_v7_tekken": Family(MISTRAL_V7, (), "Mistral v7 tekken (Small 3): BOS, "
                                "`[SYSTEM_PROMPT]...[/SYSTEM_PROMPT]` (the model's default "
                                "text, dated today, when there is no system turn), `[INST]` "
                                "user `[/INST]`, answer + EOS",
                                _INST + ("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")),
}
