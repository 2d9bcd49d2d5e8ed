"""Axolotl's `lr_groups`: parameters of the named modules train at their own learning rate.

As in Axolotl, a trainable parameter joins the first group one of whose `modules` strings is
part of its name, if it is one the optimizer decays (not a bias or norm) and not an
embedding / output-head parameter; it keeps its weight decay. The transformers Trainer builds
the optimizer; its parameters are then moved into the new groups before the first step (the
LR schedule, built afterwards, scales every group from its own LR).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from trainer.torch_free.training import LrGroup

log = logging.getLogger("ft.train")
_EMBEDDING_PARTS = ("embed_tokens", "lm_head", "lora_embedding_")


def _is_embedding(name: str) -> bool:
    return any(part in name for part in _EMBEDDING_PARTS) \
        or name.endswith("modules_to_save.default.weight") \
        or "trainable_tokens_delta" in name.split(".")


def _group_of(name: str, groups: list[LrGroup]) -> LrGroup | None:
    if _is_embedding(name):
        return None
    return next((g for g in groups if any(m in name for m in g.modules)), None)


def split_lr_groups(optimizer: torch.optim.Optimizer, model: Any, groups: list[LrGroup],
                    decayed: set[str], weight_decay: float) -> None:
    """Move each matching parameter into its `lr_groups` group. `decayed`: the names the
    Trainer puts in its weight-decay group (`weight_decay`, which the moved ones keep)."""
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    moved: dict[str, list[torch.nn.Parameter]] = {g.name: [] for g in groups}
    for group in optimizer.param_groups:
        kept = []
        for param in group["params"]:
            name = names.get(id(param), "")
            target = _group_of(name, groups) if name in decayed else None
            (moved[target.name] if target else kept).append(param)
        group["params"] = kept
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    for spec in groups:
        if moved[spec.name]:
            optimizer.add_param_group({"params": moved[spec.name], "lr": spec.lr,
                                       "weight_decay": weight_decay})
        else:
            log.warning("lr_groups %r: no trainable parameter matches %s; it changes nothing",
                        spec.name, spec.modules)
