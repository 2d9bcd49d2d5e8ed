"""Text with trained character spans -> token ids and labels, masking by char offsets.

Every format renders its row to one string plus the character spans that are trained. The
whole string is tokenized at once (so the model sees exactly the tokens it sees at inference)
and a token is trained when its character range overlaps a trained span. Special tokens are
added here and only here, so BOS is never doubled and EOS is where the format asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from trainer.data.turn_ends import ClosingRule

IGNORE = -100

Span = tuple[int, int]


@dataclass(frozen=True)
class RowText:
    """One row as text. `eos`: append the EOS token, trained ("train") or masked ("mask").

    `add_bos`: prepend BOS when the tokenizer adds one on plain encoding (chat rows keep the
    template's tokens as they are). `closing` marks the turn-closing tokens after each of
    `turn_ends` (end character of a turn, whether it trains), which needs the tokens.
    """

    text: str
    spans: list[Span] = field(default_factory=list)
    eos: Literal["train", "mask"] | None = None
    train_all: bool = False
    add_bos: bool = True
    closing: ClosingRule | None = None
    turn_ends: list[tuple[int, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class SpecialIds:
    """What the tokenizer adds on its own, probed once (no per-row guessing)."""

    bos: int | None
    eos: int | None
    pad: int | None
    adds_bos: bool

    @classmethod
    def probe(cls, tokenizer: Any) -> SpecialIds:
        bos = tokenizer.bos_token_id
        plain = tokenizer("a")["input_ids"]
        adds_bos = bos is not None and len(plain) > 0 and plain[0] == bos
        return cls(bos=bos, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                   adds_bos=adds_bos)


def encode_rendered(tokenizer: Any, ids_info: SpecialIds,
                    rows: list[RowText]) -> list[tuple[list[int], list[int]]]:
    """Tokenize a batch of rendered rows in one tokenizer call; returns (input_ids, labels)."""
    if not rows:
        return []
    enc = tokenizer([r.text for r in rows], add_special_tokens=False,
                    return_offsets_mapping=True)
    out = []
    for row, ids, offsets in zip(rows, enc["input_ids"], enc["offset_mapping"], strict=True):
        ids = list(ids)
        labels = list(ids) if row.train_all else mask_by_spans(ids, offsets, row.spans)
        if row.closing is not None:
            row.closing.mark(ids, offsets, labels, row.turn_ends)
        if row.add_bos and ids_info.adds_bos and (not ids or ids[0] != ids_info.bos):
            ids.insert(0, ids_info.bos)
            labels.insert(0, IGNORE)
        elif ids and ids[0] == ids_info.bos:
            labels[0] = IGNORE
        if row.eos is not None and ids_info.eos is not None:
            ids.append(ids_info.eos)
            labels.append(ids_info.eos if row.eos == "train" else IGNORE)
        out.append((ids, labels))
    return out


def encode_segments(tokenizer: Any, ids_info: SpecialIds,
                    rows: list[list[tuple[str, bool]]]) -> list[tuple[list[int], list[int]]]:
    """Template-free rows: each (text, trained) segment tokenized on its own, as written.

    Segment boundaries are then token boundaries, so the trained tokens are exactly the
    labelled segments (what Axolotl's input_output does). One tokenizer call per batch.
    """
    flat = [text for row in rows for text, _ in row]
    enc = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out = []
    k = 0
    for row in rows:
        ids: list[int] = []
        labels: list[int] = []
        for _, trained in row:
            piece = list(enc[k])
            k += 1
            ids += piece
            labels += piece if trained else [IGNORE] * len(piece)
        if ids_info.adds_bos and (not ids or ids[0] != ids_info.bos):
            ids.insert(0, ids_info.bos)
            labels.insert(0, IGNORE)
        out.append((ids, labels))
    return out


def mask_by_spans(ids: list[int], offsets: list[tuple[int, int]],
                  spans: list[Span]) -> list[int]:
    """Label = token id where the token's characters overlap a trained span, else IGNORE.

    A token that straddles a span boundary (BPE merged the last prompt character into it) is
    trained: the model has to produce it. Offsets and spans are both sorted, so one forward
    walk suffices.
    """
    spans = sorted(s for s in spans if s[1] > s[0])
    labels = []
    k = 0
    for tok, (start, end) in zip(ids, offsets, strict=True):
        while k < len(spans) and spans[k][1] <= start:
            k += 1
        trained = k < len(spans) and start < spans[k][1] and end > spans[k][0]
        labels.append(tok if trained else IGNORE)
    return labels


def n_targets(labels: list[int]) -> int:
    """Tokens the loss actually learns: the first label is never a target after the shift."""
    return sum(1 for x in labels[1:] if x != IGNORE)
