"""Jamba (AI21): `<|startoftext|>`, then `<|bom|><|role|> content` messages separated by
`<|eom|>`; tools, documents and output modes in system messages."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

# Documents (`documents=`) and output modes (`knobs=` with `is_set`) go into a second system
# message right before the last user turn; AI21's wording of the modes is the model's.
_EXTRA_SYSTEM = (
    r"{%- macro documents_block(docs) -%}"
    r"{{- '<documents>\n# Documents\n\nYou can use the following documents for reference:' -}}"
    r"{%- for d in docs -%}"
    r"{{- '\n\n## Document ID: ' + loop.index0 | string -}}"
    r"{%- if 'title' in d and d.title is not none -%}{{- '\nTitle: ' + d.title -}}{%- endif -%}"
    r"{%- for k, v in d.items() if k not in ('title', 'text') -%}"
    r"{{- '\n' + k | title + ': ' + v | string -}}{%- endfor -%}"
    r"{{- '\nText: ' + d.text -}}"
    r"{%- endfor -%}{{- '\n</documents>' -}}"
    r"{%- endmacro -%}"
    r"{%- macro modes_block(k) -%}"
    r"{{- '<active_output_modes>\n# Active Modes\n\nThe following modes configure the format "
    r"or style of your responses. You should adhere to all currently active modes "
    r"simultaneously.' -}}"
    r"{%- if k.citation_mode == 'fast' -%}"
    r"{{- '\n\n## Citation Mode\n\nProvide a list of references only for the documents you "
    r"base your response on. Format your response with the original answer followed by a "
    r"citation section. Use this template: `{answer}<citations>DOCUMENT_IDS</citations>`, "
    r"where DOCUMENT_IDS are the relevant document numbers (e.g. [2, 5, 9]), or [] if the "
    r"answer cannot be supported by the provided documents.' -}}{%- endif -%}"
    r"{%- if k.response_format == 'json_object' -%}"
    r"{{- '\n\n## JSON Mode\n\nProvide your response in JSON format. Adhere strictly to any "
    r"schema given by the user. If an appropriate JSON format exists, use it without "
    r"modification.' -}}{%- endif -%}"
    r"{{- '\n</active_output_modes>' -}}"
    r"{%- endmacro -%}")

JAMBA = (
    _EXTRA_SYSTEM +
    r"{%- set bom = bom_str or '<|bom|>' -%}{%- set eom = eom_str or '<|eom|>' -%}"
    r"{%- set st = namespace(count=0) -%}"
    r"{%- set own = messages | length > 0 and messages[0].role == 'system' -%}"
    r"{%- set system = messages[0].content if own else '' -%}"
    r"{%- set turns = messages[1:] if own else messages -%}"
    r"{%- set has_tools = tools is defined and tools is not none and tools | length > 0 -%}"
    r"{{- '<|startoftext|>' -}}"
    # The first system message is always written (empty without one): its text is defined.
    r"{%- if system is not none or has_tools -%}"
    r"{{- bom + '<|system|> ' + (system | string if system is not none else '') -}}"
    r"{%- if has_tools -%}"
    r"{{- ('\n\n' if system else '') + '<tool_definitions>\n# Tools\n\n## Functions' -}}"
    r"{%- for t in tools -%}"
    r"{%- if 'type' in t and t['type'] is not none -%}"
    r"{%- if t.type != 'function' -%}{{- raise_exception('Currently, the only supported tool "
    r"type is `function`') -}}{%- endif -%}{%- set t = t.function -%}{%- endif -%}"
    r"{{- '\n\n' + t | tojson(indent=2) -}}"
    r"{%- endfor -%}{{- '\n</tool_definitions>' -}}{%- endif -%}"
    r"{%- set st.count = 1 -%}{%- endif -%}"
    r"{%- set last_user = namespace(i=0) -%}"
    r"{%- for m in turns -%}{%- if m.role == 'user' -%}{%- set last_user.i = loop.index0 -%}"
    r"{%- endif -%}{%- endfor -%}"
    r"{%- for m in turns -%}"
    r"{%- if loop.index0 == last_user.i -%}"
    r"{%- set use_docs = documents is defined and documents is not none and documents | length"
    r" > 0 -%}"
    r"{%- set use_modes = knobs is defined and knobs is not none and knobs.is_set -%}"
    r"{%- if use_docs or use_modes -%}"
    r"{{- (eom if st.count > 0 else '') + bom + '<|system|> ' -}}"
    r"{%- if use_docs -%}{{- documents_block(documents) -}}{%- endif -%}"
    r"{%- if use_modes -%}{{- ('\n\n' if use_docs else '') + modes_block(knobs) -}}"
    r"{%- endif -%}"
    r"{%- set st.count = st.count + 1 -%}{%- endif -%}{%- endif -%}"
    r"{%- set content = m.content or '' -%}"
    r"{%- set content = content if content is string else content | tojson -%}"
    r"{{- (eom if st.count > 0 else '') + bom + '<|' + m.role + '|> ' -}}"
    r"{%- if 'name' in m and m.name is not none -%}{{- '(' + m.name + ')' -}}{%- endif -%}"
    r"{{- content -}}"
    r"{%- if m.role == 'assistant' and 'tool_calls' in m and m.tool_calls -%}"
    r"{%- set calls = namespace(items=[]) -%}"
    r"{%- for c in m.tool_calls -%}"
    r"{%- set f = c.function if 'function' in c and c.function is not none else c -%}"
    r"{%- set args = f.arguments if f.arguments is string else f.arguments | tojson -%}"
    r"""{%- set calls.items = calls.items + ['    {"name": "' + f.name + '", "arguments": ' """
    r"+ args + '}'] -%}"
    r"{%- endfor -%}"
    r"{{- '<tool_calls>[\n' + calls.items | join(',\n') + '\n]</tool_calls>' -}}{%- endif -%}"
    r"{%- if m.role == 'assistant' and 'citations' in m and m.citations -%}"
    r"{{- '<citations>' + m.citations | map(attribute='document_id') | list | string"
    r" + '</citations>' -}}{%- endif -%}"
    r"{%- set st.count = st.count + 1 -%}"
    r"{%- endfor -%}"
    r"{{- eom if st.count > 0 else '' -}}"
    r"{%- if add_generation_prompt -%}"
    r"{{- bom + '<|' + (role_to_predict or 'assistant') + '|>' -}}"
    r"{%- if generation_preamble is defined and generation_preamble is not none and "
    r"generation_preamble.strip() != '' -%}{{- ' ' + generation_preamble -}}{%- endif -%}"
    r"{%- endif -%}")

FAMILIES = {
    "jamba": Family(JAMBA, ("<|eom|>",), "Jamba: `<|startoftext|>`, `<|bom|><|role|> ` + "
                    "content + `<|eom|>` per message (a system message always, empty without "
                    "one); tool definitions in it, calls as `<tool_calls>` JSON, tool results "
                    "named `(function)`", ("<|startoftext|>", "<|bom|>", "<|eom|>",
                                           "<|system|>", "<|user|>", "<|assistant|>",
                                           "<|tool|>"), tools=True),
}
