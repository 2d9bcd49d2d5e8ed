"""`attn_implementation: org/repo`: a hub attention kernel, used where it loads.

The name goes to transformers as is when this machine has a GPU, the `kernels` package in
the version range transformers accepts, and the kernel itself (downloaded, or in the HF
cache). Otherwise the job does not die after its wait in the queue: it trains with the best
installed kernel (the hub kernels Axolotl's examples name are flash-attention builds, so
the spec is read as `flash_attention_2`, which ft already maps to flash-attn, its own varlen
kernel or sdpa) and says loudly why.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("ft.model")

INSTEAD = "flash_attention_2"  # what a hub flash-attention kernel stands for


def hub_kernel_or_fallback(name: str) -> str:
    """`name` where it loads here, else INSTEAD after a warning that says why."""
    reason = _why_not_loadable(name)
    if reason is None:
        return name
    log.warning("attn_implementation: %s cannot load here (%s); training with the best "
                "installed attention kernel instead (as for flash_attention_2)", name, reason)
    return INSTEAD


def _why_not_loadable(name: str) -> str | None:
    if not torch.cuda.is_available():
        return "no GPU: hub attention kernels are CUDA kernels"
    from transformers.utils.import_utils import is_kernels_available

    if not is_kernels_available():
        return ("the `kernels` package is missing or outside the versions transformers "
                "accepts: install ft-finetune[hub-kernels]")
    try:  # transformers' own loader: what from_pretrained runs for this name
        from transformers.integrations.hub_kernels import load_and_register_attn_kernel

        # As from_pretrained without `allow_all_kernels`: a kernel outside kernels-community
        # (code from any hub repo) is not run, and the reason says so.
        load_and_register_attn_kernel(name)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch or build means fall back
        return f"loading it failed: {type(exc).__name__}: {exc}"
    return None
