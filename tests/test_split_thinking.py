"""`split_thinking`: the reasoning pairs and the solution block, per Axolotl's rule."""

from __future__ import annotations

import pytest

from trainer.data.split_thinking import split_thinking


@pytest.mark.parametrize(("content", "reasoning", "answer"), [
    ("<think>\n Why? \n</think>\n\n Because.", "Why?", "Because."),
    ("<reasoning>Why?</reasoning>Because.", "Why?", "Because."),
    ("<|begin_of_thought|>Why?<|end_of_thought|>\n<|begin_of_solution|> Because. "
     "<|end_of_solution|>", "Why?", "Because."),
    ("<think>Why? and <reasoning>no</reasoning></think>Because.",
     "Why? and <reasoning>no</reasoning>", "Because."),  # the first pair found wins
])
def test_the_block_moves_to_the_reasoning_key(content, reasoning, answer):
    message = {"role": "assistant", "content": content}
    split_thinking(message, "thinking")
    assert message == {"role": "assistant", "content": answer, "thinking": reasoning}


@pytest.mark.parametrize("message", [
    {"role": "user", "content": "<think>a</think>b"},  # only answers are split
    {"role": "assistant", "content": "<think>unclosed"},
    {"role": "assistant", "content": [{"text": "<think>a</think>b"}]},
])
def test_other_messages_are_left_alone(message):
    before = dict(message)
    split_thinking(message, "reasoning_content")
    assert message == before
