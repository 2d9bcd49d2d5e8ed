"""`unfrozen_parameters`: regexes of the parameter names that train; the rest is frozen.

Axolotl's pattern syntax (its utils/freeze.py, read for the facts): a pattern matches from
the start of the name (re.match; `$` to pin the end), a `.` is a literal dot unless a `+`
follows it (`.+` keeps its regex meaning), and a trailing `[start:end]` (or `[i]`,
`[start:]`, `[:end]`) trains only those rows of the first dimension: the other rows' gradient
is zeroed by a hook, so with a plain weight decay of 0 they do not move (Axolotl's caveat
too: weight decay still shrinks them).

Names are read as in the base model (`model.layers.0.mlp.up_proj.weight`, `lm_head.weight`),
so one pattern works with and without an adapter: peft's wrapper prefix
(`base_model.model.`) is removed before matching, and a pattern that spells it still
matches. Without an adapter, every matching parameter trains. With an adapter, the
patterns choose which of the adapter's own trainable weights train (`...q_proj.lora_A...`,
the `lora_modules_to_save` copies); a frozen base weight never starts training, because
under QLoRA it is 4-bit and cannot (Axolotl matches the wrapped names, so there its
patterns written for the base model match nothing under an adapter; ft does what the
comment of Axolotl's Gemma-3 examples means: train the language model, not the vision
tower). The text model of a multimodal class sits at `model.language_model.`, the same
weights loaded text-only at `model.`: a text-only model's names are also read the first way,
so those examples' `^model.language_model.*` selects the 1B and 270M text models' layers
too. A pattern that matches nothing is reported; nothing left to train is an error.
"""

from __future__ import annotations

import logging

import torch

from trainer.torch_free.errors import UserError
from trainer.torch_free.param_patterns import PEFT_PREFIX, NamePattern, spellings

log = logging.getLogger("ft.model")

def unfreeze_only(model: torch.nn.Module, patterns: list[str], adapter: bool) -> list[str]:
    """Apply the patterns; returns the names of the parameters that train."""
    parsed = [NamePattern.parse(p) for p in patterns]
    text_only = not any(n.rsplit(".", 1)[-1] == "language_model"
                        for n, _ in model.named_modules())
    used: set[str] = set()
    trained: list[str] = []
    for name, param in model.named_parameters():
        names = spellings(name, text_only)
        hits = [p for p in parsed if p.matches(names)]
        used.update(p.text for p in hits)
        eligible = param.requires_grad if adapter else param.is_floating_point()
        param.requires_grad_(bool(hits) and eligible)
        if not param.requires_grad:
            continue
        trained.append(name)
        rows = [p.rows for p in hits]
        if None not in rows:  # every matching pattern trains some rows only
            _train_rows_only(param, name, rows)
    _report(model, parsed, used, trained, adapter)
    return trained


def _train_rows_only(param: torch.nn.Parameter, name: str,
                     ranges: list[tuple[int, int | None]]) -> None:
    """Zero the gradient of every row no range covers."""
    size = param.shape[0]
    keep = torch.zeros(size, dtype=torch.bool)
    for start, end in ranges:
        end = size if end is None else end
        if start >= size or end > size:
            raise UserError(f"`unfrozen_parameters`: rows [{start}:{end}] are outside "
                            f"{name}, which has {size}")
        keep[start:end] = True
    frozen_rows = (~keep).nonzero().flatten()

    def zero_frozen_rows(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[frozen_rows.to(grad.device)] = 0
        return grad

    param.register_hook(zero_frozen_rows)


def _report(model, parsed: list[NamePattern], used: set[str], trained: list[str],
            adapter: bool) -> None:
    example = next((n.removeprefix(PEFT_PREFIX) for n, _ in model.named_parameters()), "")
    for pattern in parsed:
        if pattern.text not in used:
            log.warning("unfrozen_parameters: %r matches no parameter of this model (names "
                        "look like %r)", pattern.text, example)
    if not trained:
        what = "adapter weight" if adapter else "parameter"
        raise UserError(f"`unfrozen_parameters` leaves no {what} to train: none of "
                        f"{[p.text for p in parsed]} matches one (names look like "
                        f"{example!r}); fix the patterns or remove the key")
    log.info("unfrozen_parameters: %d parameter tensors train, the rest is frozen",
             len(trained))
