"""The CUDA caching allocator's setting for training: expandable segments, unless the user
chose a setting of their own.

Training allocates tensors of many sizes (QLoRA's dequantized weights, packed rows of varying
lengths, the loss's chunks); with fixed-size segments the allocator keeps freed blocks it
cannot reuse, and the GPU's memory in use grows gigabytes past what tensors hold (measured on
one H100, 8B QLoRA: 38.5 GiB in use for a 33.6 GiB peak of tensors). Segments that grow in
place give that back. Axolotl sets the same default. The variable is read when CUDA first
allocates, so `ft train` sets it before anything touches the GPU; a value in the
environment (either spelling) is the user's choice and is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata

ALLOC_VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
EXPANDABLE = "expandable_segments:True"


def allocator_env(environ: Mapping[str, str], torch_version: str | None = None) -> dict[str, str]:
    """The variable to set (empty when the user set one). torch 2.9 renamed it to
    PYTORCH_ALLOC_CONF; older versions read only the CUDA-specific name."""
    if any(environ.get(name) for name in ALLOC_VARS):
        return {}
    version = torch_version or metadata.version("torch")
    major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    name = ALLOC_VARS[0] if (major, minor) >= (2, 9) else ALLOC_VARS[1]
    return {name: EXPANDABLE}
