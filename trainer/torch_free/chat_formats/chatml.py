"""ChatML-layout families: `<|im_start|>role\n ... <|im_end|>\n` per turn (chatml, Qwen 2.5,
Qwen 3 / 3.5 with their think blocks and tool calls, Nemotron-H, Falcon-H1)."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

_IM = ("<|im_end|>",)
_MARKERS = ("<|im_start|>", "<|im_end|>")

CHATML = (
    r"{%- for m in messages -%}"
    r"{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")

# Qwen's function-calling preamble (the words its models were trained with).
_QWEN_TOOLS = (
    r"{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    r"You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}"
    r"{%- for t in tools -%}{{- '\n' + (t | tojson) -}}{%- endfor -%}"
    r"""{{- '\n</tools>\n\nFor each function call, return a json object with function name """
    r"""and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"""
    r"""{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>"""
    r"""<|im_end|>\n' -}}""")

_QWEN_TOOL_TURN = (
    r"{%- elif m.role == 'tool' -%}"
    r"{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}"
    r"{{- '<|im_start|>user' -}}{%- endif -%}"
    r"{{- '\n<tool_response>\n' + tool_text(m.content) + '\n</tool_response>' -}}"
    r"{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}"
    r"{{- '<|im_end|>\n' -}}{%- endif -%}")

QWEN_25 = (
    r"{%- macro tool_text(c) -%}{{- c -}}{%- endmacro -%}"
    r"{%- set own = messages and messages[0].role == 'system' -%}"
    r"{%- set sys = messages[0].content if own else "
    r"'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' -%}"
    r"{%- if tools -%}{{- '<|im_start|>system\n' + sys | string + '\n\n' -}}" + _QWEN_TOOLS +
    r"{%- else -%}{{- '<|im_start|>system\n' + sys + '<|im_end|>\n' -}}{%- endif -%}"
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'user' or (m.role == 'system' and not loop.first)"
    r" or (m.role == 'assistant' and not m.tool_calls) -%}"
    r"{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}"
    r"{%- elif m.role == 'assistant' -%}"
    r"{{- '<|im_start|>assistant' + ('\n' + m.content if m.content else '') -}}"
    r"{%- for c in m.tool_calls -%}{%- set f = c.function if c.function is defined else c -%}"
    r"""{{- '\n<tool_call>\n{"name": "' + f.name + '", "arguments": ' + (f.arguments | tojson)"""
    r" + '}\n</tool_call>' -}}{%- endfor -%}{{- '<|im_end|>\n' -}}"
    + _QWEN_TOOL_TURN +
    r"{%- endif -%}{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")


# Qwen 3's text of content parts: the parts that have a `text`.
_PARTS = (r"{%- if c is string -%}{{- c -}}{%- else -%}{%- for p in c if 'text' in p -%}"
          r"{{- p['text'] -}}{%- endfor -%}{%- endif -%}")
QWEN3_TEXT = "".join(f"{{%- macro {name}(c) -%}}" + _PARTS + "{%- endmacro -%}"
                     for name in ("system_text", "turn_text", "answer_text", "tool_text"))
# Qwen 3.5's: a system part may carry its text as `text`, `content` or `value` (or be a
# string); image and video parts of a user turn become vision placeholders; a tool result is
# written as given.
QWEN3_5_TEXT = (
    r"{%- macro system_text(c) -%}{%- if c is string -%}{{- c -}}{%- else -%}"
    r"{%- for p in c -%}{%- if p is mapping -%}"
    r"{{- p.get('text') or p.get('content') or p.get('value') or '' -}}"
    r"{%- elif p is string -%}{{- p -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    r"{%- endmacro -%}"
    r"{%- macro turn_text(c) -%}{%- if c is string -%}{{- c -}}{%- else -%}"
    r"{%- for p in c -%}"
    r"{%- if p['type'] == 'image' or 'image' in p or 'image_url' in p -%}"
    r"{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    r"{%- elif p['type'] == 'video' or 'video' in p -%}"
    r"{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    r"{%- elif 'text' in p -%}{{- p['text'] -}}{%- endif -%}{%- endfor -%}{%- endif -%}"
    r"{%- endmacro -%}"
    r"{%- macro answer_text(c) -%}" + _PARTS + r"{%- endmacro -%}"
    r"{%- macro tool_text(c) -%}{{- c -}}{%- endmacro -%}")


def _qwen3(reasoning_test: str, text_macros: str) -> str:
    """Qwen 3's layout: an assistant turn after the last real user query shows its think
    block (empty when there is no reasoning) when it is the conversation's last message or
    has reasoning; earlier turns show the answer alone. `real_last_index` (Axolotl passes it
    when it renders a prefix) says which message is the conversation's last."""
    return (
        text_macros +
        r"{%- set own = messages and messages[0].role == 'system' -%}"
        r"{%- if tools -%}{{- '<|im_start|>system\n' + "
        r"(system_text(messages[0].content) + '\n\n' if own else '') -}}" + _QWEN_TOOLS +
        r"{%- elif own -%}"
        r"{{- '<|im_start|>system\n' + system_text(messages[0].content) + '<|im_end|>\n' -}}"
        r"{%- endif -%}"
        r"{%- set st = namespace(query=messages | length - 1, found=false) -%}"
        r"{%- for m in messages | reverse -%}"
        r"{%- set is_response = m.content is string and m.content.startswith('<tool_response>')"
        r" and m.content.endswith('</tool_response>') -%}"
        r"{%- if not st.found and m.role == 'user' and not is_response -%}"
        r"{%- set st.found = true -%}{%- set st.query = messages | length - 1 - loop.index0 -%}"
        r"{%- endif -%}{%- endfor -%}"
        r"{%- set last = real_last_index if real_last_index is defined and real_last_index "
        r"is not none else messages | length - 1 -%}"
        r"{%- for m in messages -%}"
        r"{%- if m.role == 'user' or (m.role == 'system' and not loop.first) -%}"
        r"{{- '<|im_start|>' + m.role + '\n' + turn_text(m.content) + '<|im_end|>\n' -}}"
        r"{%- elif m.role == 'assistant' -%}"
        r"{%- set text = answer_text(m.content) if m.content is not none else '' -%}"
        r"{%- set think = '' -%}"
        r"{%- if " + reasoning_test + r" -%}{%- set think = m.reasoning_content -%}"
        r"{%- elif '</think>' in text -%}"
        r"{%- set think = text.split('</think>')[0].rstrip('\n').split('<think>')[-1]"
        r".lstrip('\n') -%}"
        r"{%- set text = text.split('</think>')[-1].lstrip('\n') -%}{%- endif -%}"
        r"{%- if loop.index0 > st.query and (loop.index0 == last or think) -%}"
        r"{{- '<|im_start|>assistant\n<think>\n' + think.strip('\n') + '\n</think>\n\n'"
        r" + text.lstrip('\n') -}}"
        r"{%- else -%}{{- '<|im_start|>assistant\n' + text -}}{%- endif -%}"
        r"{%- for c in m.tool_calls or [] -%}"
        r"{%- if not loop.first or text -%}{{- '\n' -}}{%- endif -%}"
        r"{%- set f = c.function if c.function else c -%}"
        r"""{{- '<tool_call>\n{"name": "' + f.name + '", "arguments": ' + (f.arguments if """
        r"f.arguments is string else f.arguments | tojson) + '}\n</tool_call>' -}}"
        r"{%- endfor -%}{{- '<|im_end|>\n' -}}"
        + _QWEN_TOOL_TURN +
        r"{%- endif -%}{%- endfor -%}"
        r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}"
        r"{%- if enable_thinking is defined and enable_thinking is false -%}"
        r"{{- '<think>\n\n</think>\n\n' -}}{%- else -%}{{- '<think>\n\n' -}}{%- endif -%}"
        r"{%- endif -%}")


NEMOTRON_H = (
    r"{%- for m in messages -%}"
    r"{%- if m.role in ('user', 'assistant') or (m.role == 'system' and loop.first) -%}"
    r"{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}"
    r"{%- else -%}{{- raise_exception('Unexpected role: ' + m.role) -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")

# Falcon-H1: BOS first; with tools the system turn carries the function list and is left
# open (no <|im_end|>), as the model's format has it; tool calls are not written.
FALCON_H1 = (
    r"{{- bos_token -}}"
    r"{%- set own = messages and messages[0].role == 'system' -%}"
    r"{%- if tools -%}{{- '<|im_start|>system\n' + (messages[0].content + '\n\n' if own "
    r"else '') -}}"
    r"""{{- "You are a function calling AI model. You are provided with function signature """
    r"""within <tools> </tools> XML tags. You may call one or more functions to assist with """
    r"""the user query. Don't make assumptions about what values to plug into functions.\n"""
    r"""<tools>\n" -}}"""
    r"{%- for t in tools -%}{{- '[' + (t | tojson) + ']' -}}{%- endfor -%}"
    r"""{{- "\n</tools>\nFor each function call, return a json object with function name and """
    r"""arguments within <tool_call> </tool_call> tags with the following schema:\n"""
    r"""<tool_call>\n{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>\n" -}}"""
    r"{%- elif own -%}{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' -}}"
    r"{%- endif -%}"
    r"{%- for m in messages if m.role != 'system' -%}"
    r"{{- '<|im_start|>' + m.role + '\n' + m.content + '<|im_end|>\n' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}")

FAMILIES = {
    "chatml": Family(CHATML, _IM, "ChatML: `<|im_start|>role\\n...<|im_end|>\\n` for every "
                     "role, no default system turn", _MARKERS),
    "qwen_25": Family(QWEN_25, _IM, "Qwen 2.5: ChatML with Qwen's default system turn when "
                      "there is none, tools in the system turn, `<tool_call>` answers and "
                      "tool results as `<tool_response>` user turns", _MARKERS, tools=True),
    "qwen3": Family(_qwen3("m.reasoning_content is string", QWEN3_TEXT), _IM,
                    "Qwen 3: ChatML; answers after the last user query carry a "
                    "`<think>...</think>` block (empty without reasoning), tools as Qwen 2.5, "
                    "`enable_thinking: false` closes the think block of the generation prompt",
                    _MARKERS, tools=True, thinking=True),
    "qwen3_5": Family(_qwen3("m.reasoning_content is defined and m.reasoning_content is not "
                             "none", QWEN3_5_TEXT), _IM,
                      "Qwen 3.5 (text turns): as `qwen3`", _MARKERS, tools=True, thinking=True),
    "nemotron_h": Family(NEMOTRON_H, _IM, "Nemotron-H: ChatML for system (first only), user "
                         "and assistant; any other role is an error", _MARKERS),
    "falcon_h1": Family(FALCON_H1, _IM, "Falcon-H1: BOS, then ChatML; tools listed in an "
                        "open system turn", _MARKERS, tools=True),
}
