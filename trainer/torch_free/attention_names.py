"""The attention kernels a spec may name: transformers' own, or a kernel on the Hugging Face
hub (`kernels-community/vllm-flash-attn3`, as Axolotl's gpt-oss examples ask for).

A hub kernel is loaded in the job by transformers' `kernels` integration (the `kernels`
package, `ft-finetune[hub-kernels]`, and hub access or a filled HF cache); where it cannot
load, trainer/models/hub_attention.py falls back to the best installed kernel and says so.
Validation accepts the name either way: whether it loads is a fact of the job's image.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# transformers.integrations.hub_kernels.is_kernel: `org/repo`, optional `@revision` and
# `:function`.
HUB_KERNEL_PATTERN = re.compile(r"^[^/:@\s]+/[^/:@\s]+(?:@[^/:\s]+)?(?::[^/:\s]+)?$")
EXAMPLE = "kernels-community/vllm-flash-attn3"


def is_hub_kernel(name: str | None) -> bool:
    return name is not None and HUB_KERNEL_PATTERN.match(name) is not None


def _hub_kernel(name: str) -> str:
    if not is_hub_kernel(name):
        raise ValueError(f"a hub kernel `org/repo` (e.g. `{EXAMPLE}`)")
    return name


HubKernel = Annotated[str, AfterValidator(_hub_kernel)]
