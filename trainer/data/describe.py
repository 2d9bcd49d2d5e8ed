"""Human-readable views of prepared data, for `ft preprocess` (and `--debug`)."""

from __future__ import annotations

from typing import Any

from trainer.data.encode import IGNORE

MASK_OPEN, MASK_CLOSE = "\u27e6", "\u27e7"  # ⟦masked text⟧
SAMPLE_SEP = " \u2016 "  # ‖ between packed samples
DIM, RESET = "\x1b[2m", "\x1b[0m"


def describe_rows(ds: Any, tokenizer: Any, n: int = 3, *, color: bool = False) -> str:
    """The first `n` rows decoded, masked (label -100) text inside ⟦ ⟧ (or dimmed).

    Packed rows show `‖` where a new sample starts (its position id is 0).
    """
    legend = ("masked (not trained) text is dimmed" if color else
              f"masked (not trained) text is inside {MASK_OPEN} {MASK_CLOSE}")
    lines = [legend]
    for i in range(min(n, len(ds))):
        row = ds[i]
        trained = sum(1 for x in row["labels"] if x != IGNORE)
        lines.append(f"--- row {i}: {len(row['input_ids'])} tokens, {trained} trained ---")
        lines.append(render_row(row, tokenizer, color=color))
    return "\n".join(lines)


def render_row(row: dict[str, Any], tokenizer: Any, *, color: bool = False) -> str:
    """Decode runs of equally-masked tokens, so every masking boundary is visible."""
    ids, labels = row["input_ids"], row["labels"]
    starts = {i for i, p in enumerate(row.get("position_ids") or []) if p == 0 and i > 0}
    out: list[str] = []
    run: list[int] = []
    run_masked = None
    for i, (tok, lab) in enumerate(zip(ids, labels, strict=True)):
        masked = lab == IGNORE
        if run and (masked != run_masked or i in starts):
            out.append(_wrap(tokenizer.decode(run), run_masked, color))
            run = []
        if i in starts:
            out.append(SAMPLE_SEP)
        run.append(tok)
        run_masked = masked
    if run:
        out.append(_wrap(tokenizer.decode(run), run_masked, color))
    return "".join(out)


def _wrap(text: str, masked: bool | None, color: bool) -> str:
    if not masked:
        return text
    return f"{DIM}{text}{RESET}" if color else f"{MASK_OPEN}{text}{MASK_CLOSE}"


def summary_text(stats: dict[str, Any]) -> str:
    """One block of `key: value` lines for the CLI."""
    keys = ("samples", "rows", "tokens", "trained_tokens", "dropped_overlength",
            "dropped_untrained", "dropped_duplicates", "packing_efficiency", "eval_samples",
            "eval_rows", "cache", "cache_path")
    return "\n".join(f"{k}: {stats[k]}" for k in keys if stats.get(k) is not None)
