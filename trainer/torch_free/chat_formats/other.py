"""The other text families: Alpaca and Metharme prompts, EXAONE 3 / 4, DeepSeek V2 / V3,
Cohere Command-R and Aya."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

# Alpaca as a chat: `### Instruction:` / `### Response:` blocks separated by a blank line,
# answers closed by EOS, a first system text written as is.
ALPACA = (
    r"{{- bos_token -}}"
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'system' and loop.first -%}{{- m.content -}}"
    r"{%- elif m.role == 'user' -%}{{- '### Instruction:\n' + m.content -}}"
    r"{%- elif m.role == 'assistant' -%}{{- '### Response:\n' + m.content + eos_token -}}"
    r"{%- endif -%}"
    r"{%- if not loop.last -%}{{- '\n\n' -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '\n\n### Response:\n' -}}{%- endif -%}")

# Metharme (Pygmalion): `<|system|>` (a role-play default when there is none), `<|user|>`,
# `<|model|>`, contents stripped, EOS at the very end.
METHARME = (
    r"{{- bos_token -}}"
    r"{%- set own = messages[0].role == 'system' -%}"
    r"{{- '<|system|>' + (messages[0].content if own else 'Enter RP mode. You shall reply to "
    r"the user while staying in character. Your responses must be detailed, creative, "
    r"immersive, and drive the scenario forward.') -}}"
    r"{%- for m in (messages[1:] if own else messages) -%}"
    r"{%- if m.role == 'user' -%}{{- '<|user|>' + m.content.strip() -}}"
    r"{%- elif m.role == 'assistant' -%}{{- '<|model|>' + m.content.strip() -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{{- '<|model|>' if add_generation_prompt else eos_token -}}")

# EXAONE 3: `[|role|]content`, user turns end with a newline, others with `[|endofturn|]\n`;
# an empty system turn first when there is none.
EXAONE = (
    r"{%- for m in messages -%}"
    r"{%- if loop.first and m.role != 'system' -%}{{- '[|system|][|endofturn|]\n' -}}"
    r"{%- endif -%}"
    r"{{- '[|' + m.role + '|]' + m.content + ('\n' if m.role == 'user' else "
    r"'[|endofturn|]\n') -}}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '[|assistant|]' -}}{%- endif -%}")

# EXAONE 4: `[|role|]\n` headers and `[|endofturn|]\n`; every answer opens with an empty
# think block (the reasoning itself only with `skip_think=false` on the last message);
# tools listed in the system turn, results as `[|tool|]` turns of `<tool_result>` JSON.
_EXAONE4_TOOLS = (
    r"{%- macro tool_list(tools) -%}"
    r"{{- '# Available Tools\nYou can use none, one, or multiple of the following tools by "
    r"calling them as functions to help with the user’s query.\nHere are the tools available "
    r"to you in JSON format within <tool> and </tool> tags:\n' -}}"
    r"{%- for t in tools -%}{{- '<tool>' + (t | tojson(ensure_ascii=False)) + '</tool>\n' -}}"
    r"{%- endfor -%}"
    r"""{{- '\nFor each function call you want to make, return a JSON object with function """
    r"""name and arguments within <tool_call> and </tool_call> tags, like:\n<tool_call>"""
    r"""{"name": function_1_name, "arguments": {argument_1_name: argument_1_value, """
    r"""argument_2_name: argument_2_value}}</tool_call>\n<tool_call>{"name": """
    r"""function_2_name, "arguments": {...}}</tool_call>\n...\nNote that if no argument """
    r"""name is specified for a tool, you can just print the argument value directly, """
    r"""without the argument name or JSON formatting.' -}}"""
    r"{%- endmacro -%}")
EXAONE4 = (
    _EXAONE4_TOOLS +
    r"{%- set skip = skip_think if skip_think is defined else true -%}"
    r"{%- set has_tools = tools is defined and tools -%}"
    r"{%- set EMPTY = '<think>\n\n</think>\n\n' -%}"
    r"{%- for m in messages -%}"
    r"{%- if m.role not in ('user', 'assistant', 'system', 'tool') -%}"
    r"{{- raise_exception('Unknown role: ' ~ m.role) -}}{%- endif -%}"
    r"{%- if loop.first and m.role == 'system' -%}"
    r"{{- '[|system|]\n' + m.content | string -}}"
    r"{%- if has_tools -%}{{- '\n\n' + tool_list(tools) -}}{%- endif -%}"
    r"{{- '[|endofturn|]\n' -}}"
    r"{%- else -%}"
    r"{%- if loop.first and has_tools -%}"
    r"{{- '[|system|]\n' + tool_list(tools) + '[|endofturn|]\n' -}}{%- endif -%}"
    r"{%- if m.role == 'assistant' -%}"
    r"{{- '[|assistant|]\n' -}}"
    r"{%- if m.content -%}"
    r"{%- set parts = m.content.split('</think>') if m.content is string else [m.content] -%}"
    r"{%- set think = parts[0].strip() if parts | length > 1 else none -%}"
    r"{%- if think is not none and think.startswith('<think>') -%}"
    r"{%- set think = think[7:].strip() -%}{%- endif -%}"
    r"{%- if m.reasoning_content -%}{%- set think = m.reasoning_content -%}{%- endif -%}"
    r"{%- if not skip and loop.last and think is not none -%}"
    r"{{- '<think>\n' + think + '\n</think>\n\n' -}}{%- else -%}{{- EMPTY -}}{%- endif -%}"
    r"{{- parts[-1].strip() if parts | length > 1 else m.content | string -}}"
    r"{%- endif -%}"
    r"{%- if m.tool_calls -%}"
    r"{{- '\n' if m.content else EMPTY -}}"
    r"{%- for c in m.tool_calls -%}"
    r"{%- set f = c.function if c.function is defined else c -%}"
    r"{%- if f.arguments is defined -%}{%- set args = f.arguments -%}"
    r"{%- elif f.parameters is defined -%}{%- set args = f.parameters -%}"
    r"{%- else -%}{{- raise_exception('arguments or parameters are mandatory: ' ~ f) -}}"
    r"{%- endif -%}"
    r"""{{- '<tool_call>{"name": "' + f.name + '", "arguments": ' + """
    r"(args | tojson(ensure_ascii=False)) + '}</tool_call>' + ('' if loop.last else '\n') -}}"
    r"{%- endfor -%}{%- endif -%}"
    r"{{- '[|endofturn|]\n' -}}"
    r"{%- elif m.role == 'tool' -%}"
    r"{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}"
    r"{{- '[|tool|]\n' -}}{%- endif -%}"
    r"""{{- '<tool_result>{"result": ' + (m.content | tojson(ensure_ascii=False)) + """
    r"'}</tool_result>' -}}"
    r"{{- '[|endofturn|]\n' if loop.last or messages[loop.index0 + 1].role != 'tool' else "
    r"'\n' -}}"
    r"{%- else -%}{{- '[|' + m.role + '|]\n' + m.content | string + '[|endofturn|]\n' -}}"
    r"{%- endif -%}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '[|assistant|]\n' -}}"
    r"{{- '<think>\n' if enable_thinking is defined and enable_thinking is true else EMPTY -}}"
    r"{%- endif -%}")

# DeepSeek V2: BOS, system text + blank line, `<｜User｜>` / `<｜Assistant｜>`, answers + EOS.
DEEPSEEK_V2 = (
    r"{{- bos_token -}}"
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'user' -%}{{- '<｜User｜>' + m.content -}}"
    r"{%- elif m.role == 'assistant' -%}{{- '<｜Assistant｜>' + m.content + eos_token -}}"
    r"{%- elif m.role == 'system' -%}{{- m.content + '\n\n' -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<｜Assistant｜>' -}}{%- endif -%}")

# DeepSeek V3: BOS, every system text joined by blank lines, `<｜User｜>` / `<｜Assistant｜>`,
# answers closed by `<｜end▁of▁sentence｜>` (any thinking before `</think>` dropped); tool
# calls as typed blocks with JSON arguments (given as a string), tool outputs grouped.
_DS_CALL = (r"c.type + '<｜tool▁sep｜>' + c.function.name + '\n```json\n' + c.function.arguments"
            r" + '\n```<｜tool▁call▁end｜>'")
DEEPSEEK_V3 = (
    r"{%- set st = namespace(tool=false, output_first=true, system=none) -%}"
    r"{%- for m in messages if m.role == 'system' -%}"
    r"{%- set st.system = m.content if st.system is none else st.system + '\n\n' + m.content"
    r" -%}{%- endfor -%}"
    r"{{- bos_token + ('' if st.system is none else '' + st.system) -}}"
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'user' -%}{%- set st.tool = false -%}{{- '<｜User｜>' + m.content -}}"
    r"{%- elif m.role == 'assistant' and 'tool_calls' in m -%}"
    r"{%- if st.tool -%}{{- '<｜tool▁outputs▁end｜>' -}}{%- endif -%}"
    r"{%- set st.tool = false -%}"
    r"{%- for c in m.tool_calls -%}"
    r"{%- if loop.first -%}{{- '<｜Assistant｜>' + (m.content if m.content is not none else '')"
    r" + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + " + _DS_CALL + r" -}}"
    r"{%- else -%}{{- '\n<｜tool▁call▁begin｜>' + " + _DS_CALL + r" -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{{- '<｜tool▁calls▁end｜><｜end▁of▁sentence｜>' -}}"
    r"{%- elif m.role == 'assistant' -%}"
    r"{%- set text = m.content if m.content is not none else '' -%}"
    r"{%- if st.tool -%}{{- '<｜tool▁outputs▁end｜>' + text + '<｜end▁of▁sentence｜>' -}}"
    r"{%- set st.tool = false -%}"
    r"{%- else -%}{{- '<｜Assistant｜>' + text.split('</think>')[-1] + '<｜end▁of▁sentence｜>'"
    r" -}}{%- endif -%}"
    r"{%- elif m.role == 'tool' -%}"
    r"{%- if not st.tool -%}{%- set st.output_first = true -%}{%- endif -%}"
    r"{%- set st.tool = true -%}"
    r"{{- ('<｜tool▁outputs▁begin｜>' if st.output_first else '') + '<｜tool▁output▁begin｜>'"
    r" + m.content + '<｜tool▁output▁end｜>' -}}"
    r"{%- set st.output_first = false -%}"
    r"{%- endif -%}{%- endfor -%}"
    r"{%- if st.tool -%}{{- '<｜tool▁outputs▁end｜>' -}}{%- endif -%}"
    r"{%- if add_generation_prompt and not st.tool -%}{{- '<｜Assistant｜>' -}}{%- endif -%}")

# Cohere Command-R and Aya: BOS, `<|START_OF_TURN_TOKEN|>` + role token + stripped content +
# `<|END_OF_TURN_TOKEN|>`, strict user/assistant alternation after the system turn.
COHERE = (
    r"{{- bos_token -}}"
    r"{%- set own = messages[0].role == 'system' -%}"
    r"{%- if own -%}{{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + messages[0].content"
    r" + '<|END_OF_TURN_TOKEN|>' -}}{%- endif -%}"
    r"{%- for m in (messages[1:] if own else messages) -%}"
    r"{%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}{{- raise_exception('Conversation "
    r"roles must alternate user/assistant/user/assistant/...') -}}{%- endif -%}"
    r"{%- if m.role == 'user' -%}"
    r"{{- '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + m.content.strip() + '<|END_OF_TURN_TOKEN|>'"
    r" -}}"
    r"{%- elif m.role == 'assistant' -%}"
    r"{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' + m.content.strip()"
    r" + '<|END_OF_TURN_TOKEN|>' -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' -}}"
    r"{%- endif -%}")

_COHERE_MARKERS = ("<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|SYSTEM_TOKEN|>",
                   "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>")
_DEEPSEEK_MARKERS = ("<｜User｜>", "<｜Assistant｜>")
FAMILIES = {
    "alpaca": Family(ALPACA, (), "Alpaca as a chat: BOS, `### Instruction:` / `### Response:` "
                     "blocks, answers + EOS", ()),
    "metharme": Family(METHARME, (), "Metharme (Pygmalion): BOS, `<|system|>` (a role-play "
                       "default when there is none), `<|user|>`, `<|model|>`, EOS at the end",
                       ("<|system|>", "<|user|>", "<|model|>")),
    "exaone": Family(EXAONE, ("[|endofturn|]",), "EXAONE 3: `[|role|]` + content; user turns "
                     "end with a newline, others with `[|endofturn|]\\n`",
                     ("[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]")),
    "exaone4": Family(EXAONE4, ("[|endofturn|]",), "EXAONE 4: `[|role|]\\n` headers, answers "
                      "open with an empty think block, tools in the system turn, results as "
                      "`[|tool|]` turns", ("[|system|]", "[|user|]", "[|assistant|]",
                                           "[|tool|]", "[|endofturn|]"),
                      tools=True, thinking=True),
    "deepseek_v2": Family(DEEPSEEK_V2, (), "DeepSeek V2: BOS, system text + blank line, "
                          "`<｜User｜>` / `<｜Assistant｜>`, answers + EOS", _DEEPSEEK_MARKERS),
    "deepseek_v3": Family(DEEPSEEK_V3, ("<｜end▁of▁sentence｜>",), "DeepSeek V3: BOS, system "
                          "texts, `<｜User｜>` / `<｜Assistant｜>`, answers + "
                          "`<｜end▁of▁sentence｜>`; tool calls and outputs in DeepSeek's "
                          "tool blocks (arguments as a JSON string)",
                          _DEEPSEEK_MARKERS + ("<｜end▁of▁sentence｜>",), tools=True),
    "cohere": Family(COHERE, ("<|END_OF_TURN_TOKEN|>",), "Cohere Command-R: BOS, "
                     "`<|START_OF_TURN_TOKEN|>` + role token + content + "
                     "`<|END_OF_TURN_TOKEN|>`", _COHERE_MARKERS),
    "aya": Family(COHERE, ("<|END_OF_TURN_TOKEN|>",), "Aya: as `cohere`", _COHERE_MARKERS),
}
