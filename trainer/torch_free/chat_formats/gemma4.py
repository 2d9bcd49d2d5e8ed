"""Gemma 4: `<|turn>role\n ... <turn|>\n` turns, a system turn carrying the thinking switch
and the tool declarations, tool calls and responses in Gemma's own argument notation
(`<|"|>` quotes strings), thinking in `<|channel>thought ... <channel|>`."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

Q = '<|"|>'

# Values in Gemma's notation: strings quoted with <|"|>, mappings sorted by key (keys quoted
# unless `quote_keys` is false), lists in brackets, booleans lowercase.
_VALUE = (
    r"{%- macro value(v, quote_keys=true) -%}"
    r"{%- if v is string -%}{{- Q + v + Q -}}"
    r"{%- elif v is boolean -%}{{- 'true' if v else 'false' -}}"
    r"{%- elif v is mapping -%}"
    r"{%- set parts = namespace(items=[]) -%}"
    r"{%- for k, x in v | dictsort -%}"
    r"{%- set parts.items = parts.items + [(Q + k + Q if quote_keys else k) + ':' + "
    r"value(x, quote_keys)] -%}{%- endfor -%}"
    r"{{- '{' + parts.items | join(',') + '}' -}}"
    r"{%- elif v is sequence -%}"
    r"{%- set parts = namespace(items=[]) -%}"
    r"{%- for x in v -%}{%- set parts.items = parts.items + [value(x, quote_keys)] -%}"
    r"{%- endfor -%}{{- '[' + parts.items | join(',') + ']' -}}"
    r"{%- else -%}{{- v -}}{%- endif -%}"
    r"{%- endmacro -%}")

_QUOTED_LIST = (r"{%- macro quoted(names) -%}"
                r"{%- set parts = namespace(items=[]) -%}"
                r"{%- for n in names -%}{%- set parts.items = parts.items + [Q + n + Q] -%}"
                r"{%- endfor -%}{{- '[' + parts.items | join(',') + ']' -}}"
                r"{%- endmacro -%}")

# A JSON-schema property map in Gemma's declaration notation: `name:{description:...,
# ...,type:<|"|>TYPE<|"|>}` per property, sorted by name; `skip_standard` leaves out the
# schema's own keys (for an object whose properties are written inline).
_PROPERTIES = (
    r"{%- macro properties(props, skip_standard=false) -%}"
    r"{%- set out = namespace(items=[]) -%}"
    r"{%- for key, v in props | dictsort "
    r"if not (skip_standard and key in ('description', 'type', 'properties', 'required', "
    r"'nullable')) -%}"
    r"{%- set kind = v['type'] | upper -%}"
    r"{%- set p = namespace(items=[]) -%}"
    r"{%- if v['description'] -%}"
    r"{%- set p.items = p.items + ['description:' + Q + v['description'] + Q] -%}{%- endif -%}"
    r"{%- if kind == 'STRING' and v['enum'] -%}"
    r"{%- set p.items = p.items + ['enum:' + value(v['enum'])] -%}"
    r"{%- elif kind == 'ARRAY' and v['items'] is mapping and v['items'] -%}"
    r"{%- set it = namespace(items=[]) -%}"
    r"{%- for ik, iv in v['items'] | dictsort if iv is not none -%}"
    r"{%- if ik == 'properties' -%}"
    r"{%- set it.items = it.items + ['properties:{' + (properties(iv) if iv is mapping else '')"
    r" + '}'] -%}"
    r"{%- elif ik == 'required' -%}{%- set it.items = it.items + ['required:' + quoted(iv)] -%}"
    r"{%- elif ik == 'type' -%}"
    r"{%- set it.items = it.items + ['type:' + value(iv | upper if iv is string else "
    r"iv | map('upper') | list)] -%}"
    r"{%- else -%}{%- set it.items = it.items + [ik + ':' + value(iv)] -%}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- set p.items = p.items + ['items:{' + it.items | join(',') + '}'] -%}"
    r"{%- endif -%}"
    r"{%- if v['nullable'] -%}{%- set p.items = p.items + ['nullable:true'] -%}{%- endif -%}"
    r"{%- if kind == 'OBJECT' -%}"
    r"{%- if v['properties'] is defined and v['properties'] is mapping -%}"
    r"{%- set p.items = p.items + ['properties:{' + properties(v['properties']) + '}'] -%}"
    r"{%- elif v is mapping -%}"
    r"{%- set p.items = p.items + ['properties:{' + properties(v, true) + '}'] -%}"
    r"{%- endif -%}"
    r"{%- if v['required'] -%}"
    r"{%- set p.items = p.items + ['required:' + quoted(v['required'])] -%}{%- endif -%}"
    r"{%- endif -%}"
    r"{%- set p.items = p.items + ['type:' + Q + kind + Q] -%}"
    r"{%- set out.items = out.items + [key + ':{' + p.items | join(',') + '}'] -%}"
    r"{%- endfor -%}"
    r"{{- out.items | join(',') -}}"
    r"{%- endmacro -%}")

_DECLARATION = (
    r"{%- macro declaration(tool) -%}"
    r"{%- set f = tool['function'] -%}"
    r"{{- 'declaration:' + f['name'] + '{description:' + Q + f['description'] + Q -}}"
    r"{%- set params = f['parameters'] -%}"
    r"{%- if params -%}{{- ',parameters:{' -}}"
    r"{%- if params['properties'] -%}"
    r"{{- 'properties:{' + properties(params['properties']) + '},' -}}{%- endif -%}"
    r"{%- if params['required'] -%}{{- 'required:' + quoted(params['required']) + ',' -}}"
    r"{%- endif -%}"
    r"{%- if params['type'] -%}{{- 'type:' + Q + params['type'] | upper + Q + '}' -}}"
    r"{%- endif -%}{%- endif -%}"
    r"{%- if 'response' in f -%}{%- set r = f['response'] -%}{{- ',response:{' -}}"
    r"{%- if r['description'] -%}{{- 'description:' + Q + r['description'] + Q + ',' -}}"
    r"{%- endif -%}"
    r"{%- if r['type'] | upper == 'OBJECT' -%}{{- 'type:' + Q + r['type'] | upper + Q + '}' -}}"
    r"{%- endif -%}{%- endif -%}"
    r"{{- '}' -}}"
    r"{%- endmacro -%}")

_RESPONSE = (
    r"{%- macro response(name, body) -%}"
    r"{%- if body is mapping -%}"
    r"{%- set parts = namespace(items=[]) -%}"
    r"{%- for k, x in body | dictsort -%}"
    r"{%- set parts.items = parts.items + [k + ':' + value(x, false)] -%}{%- endfor -%}"
    r"{{- '<|tool_response>response:' + name + '{' + parts.items | join(',') + '}"
    r"<tool_response|>' -}}"
    r"{%- else -%}{{- '<|tool_response>response:' + name + '{value:' + value(body, false) + "
    r"'}<tool_response|>' -}}{%- endif -%}"
    r"{%- endmacro -%}")

# A model turn's text without its thinking channels.
_VISIBLE = (
    r"{%- macro visible(text) -%}"
    r"{%- set kept = namespace(s='') -%}"
    r"{%- for part in text.split('<channel|>') -%}"
    r"{%- set kept.s = kept.s + part.split('<|channel>')[0] -%}{%- endfor -%}"
    r"{{- kept.s | trim -}}"
    r"{%- endmacro -%}")

_TEXT_PARTS = (r"{%- macro text_of(content, model) -%}"
               r"{%- if content is string -%}"
               r"{{- visible(content) if model else content | trim -}}"
               r"{%- elif content is sequence -%}"
               r"{%- for item in content if item['type'] == 'text' -%}"
               r"{{- visible(item['text']) if model else item['text'] | trim -}}"
               r"{%- endfor -%}{%- endif -%}"
               r"{%- endmacro -%}")

GEMMA4 = (
    r"{%- set Q = '" + Q + r"' -%}" + _VALUE + _QUOTED_LIST + _PROPERTIES + _DECLARATION
    + _RESPONSE + _VISIBLE + _TEXT_PARTS +
    r"{%- set thinking = enable_thinking is defined and enable_thinking -%}"
    r"{%- set st = namespace(last=none) -%}"
    r"{%- set turns = messages -%}"
    r"{{- bos_token -}}"
    r"{%- if thinking or tools or messages[0]['role'] in ('system', 'developer') -%}"
    r"{{- '<|turn>system\n' -}}"
    r"{%- if thinking -%}{{- '<|think|>\n' -}}{%- endif -%}"
    r"{%- if messages[0]['role'] in ('system', 'developer') -%}"
    r"{%- set first = messages[0]['content'] -%}"
    r"{%- if first is string -%}{{- first | trim -}}"
    r"{%- elif first is sequence -%}{%- for item in first -%}{{- item['text'] | trim + ' ' -}}"
    r"{%- endfor -%}{%- endif -%}"
    r"{%- set turns = messages[1:] -%}{%- endif -%}"
    r"{%- for t in tools or [] -%}{{- '<|tool>' + declaration(t) | trim + '<tool|>' -}}"
    r"{%- endfor -%}"
    r"{{- '<turn|>\n' -}}{%- endif -%}"
    r"{%- set lu = namespace(i=-1) -%}"
    r"{%- for m in turns -%}{%- if m['role'] == 'user' -%}{%- set lu.i = loop.index0 -%}"
    r"{%- endif -%}{%- endfor -%}"
    r"{%- for m in turns -%}{%- if m['role'] != 'tool' -%}"
    r"{%- set i = loop.index0 -%}"
    r"{%- set st.last = none -%}"
    r"{%- set role = 'model' if m['role'] == 'assistant' else m['role'] -%}"
    # an answer right after another answer (tool turns between) continues the same turn
    r"{%- set before = turns[:i] | rejectattr('role', 'equalto', 'tool') | list -%}"
    r"{%- if not (role == 'model' and before and before[-1]['role'] == 'assistant') -%}"
    r"{{- '<|turn>' + role + '\n' -}}{%- endif -%}"
    r"{%- set thought = m.get('reasoning') or m.get('reasoning_content') -%}"
    r"{%- if thought and i > lu.i and m.get('tool_calls') -%}"
    r"{{- '<|channel>thought\n' + thought + '\n<channel|>' -}}{%- endif -%}"
    r"{%- for c in m['tool_calls'] or [] -%}"
    r"{%- set f = c['function'] -%}"
    r"{%- set args = namespace(items=[]) -%}"
    r"{%- if f['arguments'] is mapping -%}"
    r"{%- for k, x in f['arguments'] | dictsort -%}"
    r"{%- set args.items = args.items + [k + ':' + value(x, false)] -%}{%- endfor -%}"
    r"{%- elif f['arguments'] is string -%}{%- set args.items = [f['arguments']] -%}"
    r"{%- endif -%}"
    r"{{- '<|tool_call>call:' + f['name'] + '{' + args.items | join(',') + '}<tool_call|>' -}}"
    r"{%- set st.last = 'tool_call' -%}"
    r"{%- endfor -%}"
    r"{%- set answered = namespace(any=false, stop=false) -%}"
    r"{%- if m.get('tool_responses') -%}"
    r"{%- for r in m['tool_responses'] -%}"
    r"{{- response(r['name'] | default('unknown'), r['response']) -}}"
    r"{%- set answered.any = true -%}{%- set st.last = 'tool_response' -%}{%- endfor -%}"
    r"{%- elif m.get('tool_calls') -%}"
    r"{%- for follow in turns[i + 1:] -%}"
    r"{%- if follow['role'] != 'tool' -%}{%- set answered.stop = true -%}{%- endif -%}"
    r"{%- if not answered.stop -%}"
    r"{%- set called = namespace(name=follow.get('name') | default('unknown')) -%}"
    r"{%- for c in m['tool_calls'] if c.get('id') == follow.get('tool_call_id') -%}"
    r"{%- set called.name = c['function']['name'] -%}{%- endfor -%}"
    r"{%- set body = follow.get('content') -%}"
    r"{%- if body is sequence and body is not string -%}"
    r"{%- set txt = namespace(s='') -%}"
    r"{%- for part in body if part.get('type') == 'text' -%}"
    r"{%- set txt.s = txt.s + (part.get('text') | default('')) -%}{%- endfor -%}"
    r"{{- response(called.name, txt.s) -}}"
    r"{%- else -%}{{- response(called.name, body) -}}{%- endif -%}"
    r"{%- set answered.any = true -%}{%- set st.last = 'tool_response' -%}"
    r"{%- endif -%}{%- endfor -%}{%- endif -%}"
    r"{%- set text = text_of(m['content'], role == 'model') -%}"
    r"{{- text -}}"
    r"{%- if st.last == 'tool_call' and not answered.any -%}{{- '<|tool_response>' -}}"
    r"{%- elif not (answered.any and not text | trim | length > 0) -%}{{- '<turn|>\n' -}}"
    r"{%- endif -%}"
    r"{%- endif -%}{%- endfor -%}"
    r"{%- if add_generation_prompt and st.last not in ('tool_response', 'tool_call') -%}"
    r"{{- '<|turn>model\n' -}}"
    r"{%- if not enable_thinking | default(false) -%}{{- '<|channel>thought\n<channel|>' -}}"
    r"{%- endif -%}{%- endif -%}")

_MARKERS = ("<|turn>", "<turn|>", "<|think|>", "<|tool>", "<tool|>", "<|tool_call>",
            "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|channel>", "<channel|>",
            Q)
FAMILIES = {
    "gemma4": Family(GEMMA4, ("<turn|>",), "Gemma 4 (text): BOS, `<|turn>user|model\\n` + "
                     "trimmed content + `<turn|>\\n`; a system turn for the system text, "
                     "`enable_thinking` (`<|think|>`) and tool declarations; tool calls and "
                     "responses in Gemma's notation, reasoning of a tool-calling answer in a "
                     "thought channel", _MARKERS, tools=True, thinking=True),
    "gemma4_unified": Family(GEMMA4, ("<turn|>",), "Gemma 4 unified: as `gemma4`", _MARKERS,
                             tools=True, thinking=True),
}
