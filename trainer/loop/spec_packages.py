"""Packages only some specs need, checked when training starts (before the data and the
model are loaded) so a missing one is one clear line, not an ImportError at the first
optimizer step. The fix is the same install line `ft train` gives for the core stack."""

from __future__ import annotations

import importlib.util

from trainer.torch_free.errors import UserError
from trainer.torch_free.optimizers import TORCHAO


def require_spec_packages(cfg) -> None:
    needs = []
    if cfg.optimizer in TORCHAO:
        needs.append(f"`optimizer: {cfg.optimizer}`")
    if cfg.qat is not None:
        needs.append("`qat`")
    if needs and importlib.util.find_spec("torchao") is None:
        raise UserError(f"{' and '.join(needs)} need torchao, which this install lacks: "
                        "pip install 'ft-finetune[train]' (or pip install torchao)")
