"""Phi layouts: Phi-3 / 3.5 (`<|role|>\n ... <|end|>\n`) and Phi-4 (`<|im_sep|>` ChatML)."""

from __future__ import annotations

from trainer.torch_free.chat_formats.family import Family

# Phi-3: BOS first; each user turn is followed by the assistant header, so a conversation
# ending with a user turn already asks for the answer.
PHI_3 = (
    r"{{- bos_token -}}"
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'system' -%}{{- '<|system|>\n' + m.content + '<|end|>\n' -}}"
    r"{%- elif m.role == 'user' -%}{{- '<|user|>\n' + m.content + '<|end|>\n<|assistant|>\n' -}}"
    r"{%- elif m.role == 'assistant' -%}{{- m.content + '<|end|>\n' -}}{%- endif -%}"
    r"{%- endfor -%}")

# Phi-3.5: no BOS; an empty system turn is left out.
PHI_35 = (
    r"{%- for m in messages -%}"
    r"{%- if m.role == 'system' and m.content or m.role in ('user', 'assistant') -%}"
    r"{{- '<|' + m.role + '|>\n' + m.content + '<|end|>\n' -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}")

# Phi-4 (reasoning): `<|im_start|>role<|im_sep|>content<|im_end|>` with no newlines, and its
# thinking system prompt when the conversation has no system turn.
_PHI4_SYSTEM = (
    "You are Phi, a language model trained by Microsoft to help users. Your role as an "
    "assistant involves thoroughly exploring questions through a systematic thinking process "
    "before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, "
    "backtracing, and iteration to develop well-considered thinking process. Please "
    "structure your response into two main sections: Thought and Solution using the "
    "specified format: <think> {Thought section} </think> {Solution section}. In the Thought "
    "section, detail your reasoning process in steps. Each step should include detailed "
    "considerations such as analysing questions, summarizing relevant findings, brainstorming "
    "new ideas, verifying the accuracy of the current steps, refining any errors, and "
    "revisiting previous steps. In the Solution section, based on various attempts, "
    "explorations, and reflections from the Thought section, systematically present the "
    "final solution that you deem correct. The Solution section should be logical, accurate, "
    "and concise and detail necessary steps needed to reach the conclusion. Now, try to solve "
    "the following question through the above guidelines:")
PHI_4 = (
    r"{%- set own = messages and messages[0].role == 'system' -%}"
    r"{{- '<|im_start|>system<|im_sep|>' + (messages[0].content | string if own else '"
    + _PHI4_SYSTEM + r"') + '<|im_end|>' -}}"
    r"{%- for m in (messages[1:] if own else messages) -%}"
    r"{%- if m.role in ('user', 'assistant') -%}"
    r"{{- '<|im_start|>' + m.role + '<|im_sep|>' + m.content + '<|im_end|>' -}}{%- endif -%}"
    r"{%- endfor -%}"
    r"{%- if add_generation_prompt -%}{{- '<|im_start|>assistant<|im_sep|>' -}}{%- endif -%}")

_PHI3_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
FAMILIES = {
    "phi_3": Family(PHI_3, ("<|end|>",), "Phi-3: BOS, `<|role|>\\n` + content + `<|end|>\\n`; "
                    "every user turn is followed by `<|assistant|>\\n`", _PHI3_MARKERS),
    "phi_35": Family(PHI_35, ("<|end|>",), "Phi-3.5: as `phi_3` without BOS; an empty system "
                     "turn is left out", _PHI3_MARKERS),
    "phi_4": Family(PHI_4, ("<|im_end|>",), "Phi-4 reasoning: `<|im_start|>role<|im_sep|>` + "
                    "content + `<|im_end|>`, no newlines; Phi's thinking system prompt when "
                    "there is no system turn; tool turns are left out",
                    ("<|im_start|>", "<|im_sep|>", "<|im_end|>")),
}
