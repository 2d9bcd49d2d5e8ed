"""Dataset `type:` -> a batched row encoder producing `input_ids` and `labels`.

alpaca, chat_template, input_output and completion render each row to text with trained
character spans (see `encode.py`); pre-tokenized rows pass through. Labels are -100 where the
loss must not learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trainer.data.chat import ChatFormatter
from trainer.data.encode import (
    IGNORE,
    RowText,
    SpecialIds,
    encode_rendered,
    encode_segments,
)
from trainer.data.mistral_chat import MistralChatEncoder
from trainer.data.templates import alpaca_prompt, resolve_chat_template
from trainer.models.mistral_tokenizer import is_mistral_common
from trainer.torch_free.training import DatasetSpec, TrainingConfig

TEXT_TYPES = ("alpaca", "chat_template", "input_output", "completion")
PRETOKENIZED = (None, "pretokenized")
Batch = dict[str, list[Any]]


def render_alpaca(row: dict[str, Any], train_on_inputs: bool) -> RowText:
    for key in ("instruction", "output"):
        if row.get(key) is None:
            raise ValueError(f"alpaca row has no `{key}` column")
    prompt = alpaca_prompt(row["instruction"], row.get("input"))
    text = prompt + row["output"]
    return RowText(text, [(len(prompt), len(text))], eos="train", train_all=train_on_inputs)


def input_output_segments(row: dict[str, Any]) -> list[tuple[str, bool]]:
    """Segments as written: no template, no EOS (write it into the text)."""
    segments = row.get("segments")
    if segments is None:
        raise ValueError("input_output row has no `segments` column")
    return [(seg.get("text") or "", bool(seg.get("label"))) for seg in segments]


class RowEncoder:
    """Batched `datasets.map` function for one dataset spec (picklable for num_proc)."""

    def __init__(self, spec: DatasetSpec, cfg: TrainingConfig, tokenizer: Any) -> None:
        if spec.type not in TEXT_TYPES + PRETOKENIZED:
            raise ValueError(f"unknown dataset type {spec.type!r}; supported: "
                             f"{', '.join(TEXT_TYPES)}, pretokenized (or omit `type`)")
        self.type = spec.type
        self.tokenizer = tokenizer
        self.ids = SpecialIds.probe(tokenizer)
        self.sequence_len = cfg.sequence_len
        self.text_field = spec.field or "text"
        self.train_on_inputs = (cfg.train_on_inputs if spec.train_on_inputs is None
                                else spec.train_on_inputs)
        self.chat: ChatFormatter | None = None
        if spec.type == "chat_template" and is_mistral_common(tokenizer):
            self.chat = MistralChatEncoder(spec, tokenizer, train_on_inputs=self.train_on_inputs,
                                           system_message=cfg.default_system_message,
                                           template_kwargs=cfg.chat_template_kwargs)
        elif spec.type == "chat_template":
            template = resolve_chat_template(
                spec.chat_template or cfg.chat_template, tokenizer,
                jinja=spec.chat_template_jinja or cfg.chat_template_jinja)
            self.chat = ChatFormatter(spec, tokenizer, template.jinja,
                                      train_on_inputs=self.train_on_inputs,
                                      system_message=cfg.default_system_message,
                                      eot_tokens=cfg.eot_tokens,
                                      template_kwargs=cfg.chat_template_kwargs)

    def __call__(self, batch: Batch) -> Batch:
        rows = [dict(zip(batch, values, strict=True))
                for values in zip(*batch.values(), strict=True)]
        if self.type in PRETOKENIZED:
            pairs = [pretokenized(row) for row in rows]
        elif isinstance(self.chat, MistralChatEncoder):
            pairs = [self.chat.encode(row) for row in rows]
        elif self.type == "input_output":
            pairs = encode_segments(self.tokenizer, self.ids,
                                    [input_output_segments(r) for r in rows])
        else:
            pairs = encode_rendered(self.tokenizer, self.ids, [self.render(r) for r in rows])
            if self.type == "completion":
                pairs = [chunk for pair in pairs for chunk in self._chunks(*pair)]
        return {"input_ids": [p[0] for p in pairs], "labels": [p[1] for p in pairs]}

    def render(self, row: dict[str, Any]) -> RowText:
        if self.chat is not None:
            return self.chat(row)
        if self.type == "alpaca":
            return render_alpaca(row, self.train_on_inputs)
        text = row.get(self.text_field)
        if text is None:
            raise ValueError(f"completion row has no `{self.text_field}` column (set `field:`)")
        return RowText(text, eos="train", train_all=True)

    def _chunks(self, ids: list[int], labels: list[int]) -> list[tuple[list[int], list[int]]]:
        """Long completion texts become several rows of at most sequence_len, all trained."""
        n = self.sequence_len
        return [(ids[i:i + n], labels[i:i + n]) for i in range(0, len(ids), n)]


def pretokenized(row: dict[str, Any]) -> tuple[list[int], list[int]]:
    """input_ids (+ optional labels, attention_mask); padded positions are removed."""
    if row.get("input_ids") is None:
        raise ValueError("pre-tokenized rows need an `input_ids` column (or set `type:`)")
    ids = list(row["input_ids"])
    labels = list(row["labels"]) if row.get("labels") is not None else list(ids)
    mask = row.get("attention_mask")
    if mask is not None:
        keep = [i for i, m in enumerate(mask) if m]
        ids, labels = [ids[i] for i in keep], [labels[i] for i in keep]
    if len(labels) != len(ids):
        raise ValueError("pre-tokenized row: `labels` and `input_ids` differ in length")
    return ids, [IGNORE if x is None else x for x in labels]


def make_encoder(spec: DatasetSpec, cfg: TrainingConfig, tokenizer: Any) -> Callable[[Batch],
                                                                                    Batch]:
    return RowEncoder(spec, cfg, tokenizer)
