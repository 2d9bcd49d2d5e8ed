"""Gemma layouts: `<start_of_turn>user|model\n ... <end_of_turn>\n`, BOS first, strict
user/model alternation."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

_ALTERNATE = (r"{%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}"
              r"{{- raise_exception('Conversation roles must alternate "
              r"user/assistant/user/assistant/...') -}}{%- endif -%}")
_TURN = (r"{{- '<start_of_turn>' + ('model' if m.role == 'assistant' else m.role) + '\n'")
_GENERATION = (r"{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}"
               r"{%- endif -%}")

# Gemma (1, 2): no system role at all: a system message is an error, as in its models'
# own template.
GEMMA = (
    r"{{- bos_token -}}"
    r"{%- if messages[0].role == 'system' -%}"
    r"{{- raise_exception('System role not supported') -}}{%- endif -%}"
    r"{%- for m in messages -%}" + _ALTERNATE + _TURN + r" -}}"
    r"{%- if m.content is string -%}{{- m.content | trim -}}"
    r"{%- else -%}{%- for p in m.content if 'text' in p -%}{{- p['text'] | trim -}}"
    r"{%- endfor -%}{%- endif -%}"
    r"{{- '<end_of_turn>\n' -}}{%- endfor -%}" + _GENERATION)

# Gemma 3 (text): the system text opens the first user turn, followed by a blank line;
# content parts are shown trimmed, an image part as `<start_of_image>`.
GEMMA3 = (
    r"{{- bos_token -}}"
    r"{%- set own = messages[0].role == 'system' -%}"
    r"{%- set system = namespace(text='') -%}"
    r"{%- if own and messages[0].content is string -%}"
    r"{%- set system.text = messages[0].content -%}"
    r"{%- elif own -%}{%- for p in messages[0].content if 'text' in p -%}"
    r"{%- set system.text = system.text + p['text'] -%}{%- endfor -%}{%- endif -%}"
    r"{%- set prefix = system.text + '\n\n' if own else '' -%}"
    r"{%- for m in (messages[1:] if own else messages) -%}" + _ALTERNATE + _TURN +
    r" + (prefix if loop.first else '') -}}"
    r"{%- if m.content is string -%}{{- m.content | trim -}}"
    r"{%- elif m.content is iterable -%}{%- for p in m.content -%}"
    r"{%- if p['type'] == 'image' -%}{{- '<start_of_image>' -}}"
    r"{%- elif p['type'] == 'text' -%}{{- p['text'] | trim -}}{%- endif -%}{%- endfor -%}"
    r"{%- else -%}{{- raise_exception('Invalid content type') -}}{%- endif -%}"
    r"{{- '<end_of_turn>\n' -}}"
    r"{%- endfor -%}" + _GENERATION)

_MARKERS = ("<start_of_turn>", "<end_of_turn>")
FAMILIES = {
    "gemma": Family(GEMMA, ("<end_of_turn>",), "Gemma 1/2: BOS, `<start_of_turn>user|model\\n`"
                    " + trimmed content + `<end_of_turn>\\n`; a system turn is an error",
                    _MARKERS),
    "gemma3": Family(GEMMA3, ("<end_of_turn>",), "Gemma 3 (text): as `gemma`, the system text "
                     "opening the first user turn", _MARKERS),
}
