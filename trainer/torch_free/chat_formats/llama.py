"""Llama 3 and Llama 4 layouts: role headers, one end-of-turn token, BOS written first."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

# Llama 3: every content trimmed; no date header (the tokenizers' own templates add a
# "Today Date" one, which would make the prompt change every day).
# The text of content parts (`[{"type": "text", "text": ...}]`): those with a `text`.
_PARTS_TEXT = "| selectattr('text', 'defined') | map(attribute='text') | join('')"
LLAMA3 = (
    r"{{- bos_token -}}"
    r"{%- for m in messages -%}"
    r"{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\n\n' + (m.content if "
    r"m.content is string else m.content " + _PARTS_TEXT + r") | trim + '<|eot_id|>' -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}"
    r"{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}{%- endif -%}")

# Llama 4's function-calling instructions, as its models were trained with.
_L4_CALL_FORMAT = (r"""'Respond in the format {"name": function name, "parameters": """
                   r"""dictionary of argument name and its value}.Do not use variables.\n\n'""")

# Llama 4: the system text trimmed, other contents as written. With tools (`custom_tools`
# too), the function list goes into the first user turn (or, with
# `tools_in_user_message=false`, into the system turn, which then says "Environment: ipython");
# tool calls are `<|python_start|>...<|python_end|>` + JSON; tool results are `ipython` turns.
LLAMA4 = (
    r"{%- macro text(c) -%}{{- c if c is string else c " + _PARTS_TEXT + r" -}}{%- endmacro -%}"
    # a turn's content as shown: text parts, and `<|image|>` where an image part was
    r"{%- macro shown(c) -%}{%- if c is string -%}{{- c -}}{%- else -%}"
    r"{%- for p in c -%}{%- if p['type'] == 'image' -%}{{- '<|image|>' -}}"
    r"{%- elif p['type'] == 'text' -%}{{- p['text'] -}}{%- endif -%}{%- endfor -%}"
    r"{%- endif -%}{%- endmacro -%}"
    r"{{- bos_token -}}"
    r"{%- set tools = custom_tools if custom_tools is defined else "
    r"(tools if tools is defined else none) -%}"
    r"{%- set in_user = tools_in_user_message if tools_in_user_message is defined else true -%}"
    r"{%- set rest = messages -%}"
    r"{%- if messages[0].role == 'system' -%}"
    r"{%- set rest = messages[1:] -%}"
    r"{{- '<|header_start|>system<|header_end|>\n\n' -}}"
    r"{%- if tools is not none -%}{{- 'Environment: ipython\n' -}}{%- endif -%}"
    r"{%- if tools is not none and not in_user -%}"
    r"{{- 'You have access to the following functions. To call a function, please respond "
    r"with JSON for a function call.' + " + _L4_CALL_FORMAT + r" -}}"
    r"{%- for t in tools -%}{{- (t | tojson(indent=4)) + '\n\n' -}}{%- endfor -%}"
    r"{%- endif -%}"
    r"{{- text(messages[0].content) | trim + '<|eot|>' -}}"
    r"{%- endif -%}"
    r"{%- if in_user and tools is not none -%}"
    r"{%- if not rest -%}{{- raise_exception('Llama 4 puts the tools in the first user "
    r"message, and there is none') -}}{%- endif -%}"
    r"{{- '<|header_start|>user<|header_end|>\n\nGiven the following functions, please "
    r"respond with a JSON for a function call with its proper arguments that best answers "
    r"the given prompt.\n\n' + " + _L4_CALL_FORMAT + r" -}}"
    r"{%- for t in tools -%}{{- (t | tojson(indent=4)) + '\n\n' -}}{%- endfor -%}"
    r"{{- text(rest[0].content) | trim + '<|eot|>' -}}"
    r"{%- set rest = rest[1:] -%}"
    r"{%- endif -%}"
    r"{%- for m in rest -%}"
    r"{%- if m.role in ('tool', 'ipython') -%}"
    r"{{- '<|header_start|>ipython<|header_end|>\n\n' + (m.content | tojson if m.content is "
    r"mapping or m.content is iterable else m.content) + '<|eot|>' -}}"
    r"{%- elif 'tool_calls' in m -%}"
    r"{%- if m.tool_calls | length > 0 -%}"
    r"{{- '<|header_start|>assistant<|header_end|>\n\n<|python_start|>' + shown(m.content)"
    r" + '<|python_end|>' -}}"
    r"{%- for c in m.tool_calls -%}"
    r"""{{- '{"name": "' + c.function.name + '", "parameters": ' + """
    r"(c.function.arguments | tojson) + '}' -}}"
    r"{%- endfor -%}{{- '<|eot|>' -}}{%- endif -%}"
    r"{%- else -%}"
    r"{{- '<|header_start|>' + m.role + '<|header_end|>\n\n' + shown(m.content) + '<|eot|>'"
    r" -}}"
    r"{%- endif -%}{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|header_start|>assistant<|header_end|>\n\n' -}}"
    r"{%- endif -%}")

FAMILIES = {
    "llama3": Family(LLAMA3, ("<|eot_id|>",), "Llama 3.x: BOS, `<|start_header_id|>role"
                     "<|end_header_id|>\\n\\n` + trimmed content + `<|eot_id|>`; no date header",
                     ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    "llama4": Family(LLAMA4, ("<|eot|>",), "Llama 4: BOS, `<|header_start|>role<|header_end|>"
                     "\\n\\n` + content + `<|eot|>`; tools in the first user turn, calls in "
                     "`<|python_start|>`, results as `ipython` turns",
                     ("<|header_start|>", "<|header_end|>", "<|eot|>", "<|python_start|>",
                      "<|python_end|>"), tools=True),
}
