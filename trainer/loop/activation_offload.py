"""Activations saved for backward, kept in CPU memory instead of on the GPU.

A saved-tensors hook pair (torch.autograd.graph.saved_tensors_hooks) is active while the
forward runs: every tensor autograd saves is copied to pinned CPU memory and the GPU copy
is released; backward copies it back when it needs it. The hooks are not active in
backward, so a recomputed layer's activations stay where they are made (a round trip
through the CPU would be pure cost).

What is saved depends on trainer/torch_free/activation_offloading.py's mode: with every
layer recomputed by reentrant checkpointing, the forward saves only each layer's input
(torch's reentrant checkpoint saves its inputs with save_for_backward; the non-reentrant one
keeps them alive in a closure, out of the hooks' reach, which is why this mode recomputes
reentrantly) plus what lies outside the layers; without recompute it saves everything.

Copies are issued non-blocking on the compute stream: the copy back in backward is queued
behind the copy out on that same stream, and the caching allocator reuses a freed block
only behind work already queued on its stream, so no explicit synchronisation is needed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from trainer.torch_free.activation_offloading import offload_mode

log = logging.getLogger("ft.offload")

# Smaller tensors (scalars, shapes, masks of a few rows) cost more in copy latency than
# they free.
MIN_OFFLOAD_BYTES = 1024


@dataclass
class OffloadCounts:
    """What the hooks did, for the training summary (and the tests)."""

    saved: int = 0  # tensors autograd saved while the hooks were active
    offloaded: int = 0  # of those, copied to CPU memory
    offloaded_bytes: int = 0


class ActivationOffload:
    """The hook pair and its counts. `parameters`: the model's, never offloaded (a weight
    saved by a matmul is the live parameter: copying it frees nothing)."""

    def __init__(self, model: torch.nn.Module, mode: str):
        self.mode = mode
        self.counts = OffloadCounts()
        self._model = model
        self._weights: set[int] = set()

    def forward_context(self):
        # Read where the weights live now: the Trainer moves the model after this object
        # is made, and FSDP gathers its parameters into fresh storage.
        self._weights = {_storage(p) for p in self._model.parameters()
                         if p.device.type != "meta"}
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, tensor: torch.Tensor):
        self.counts.saved += 1
        size = tensor.numel() * tensor.element_size()
        if tensor.device.type == "cpu" or size < MIN_OFFLOAD_BYTES or \
                isinstance(tensor, torch.nn.Parameter) or \
                _storage(tensor) in self._weights:
            return tensor
        host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        self.counts.offloaded += 1
        self.counts.offloaded_bytes += size
        return _OnHost(tensor.device, host)

    @staticmethod
    def _unpack(packed):
        if isinstance(packed, _OnHost):
            return packed.host.to(packed.device, non_blocking=True)
        return packed

    def facts(self) -> dict:
        return {"mode": self.mode, "saved_tensors": self.counts.saved,
                "offloaded_tensors": self.counts.offloaded,
                "offloaded_gib": round(self.counts.offloaded_bytes / 2**30, 3)}


def _storage(tensor: torch.Tensor) -> int | None:
    """Where a tensor's memory starts (None for a subclass without plain storage)."""
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


@dataclass(frozen=True)
class _OnHost:
    device: torch.device
    host: torch.Tensor


def offloader_for(cfg, model: torch.nn.Module) -> ActivationOffload | None:
    mode = offload_mode(cfg)
    if mode is None:
        return None
    log.info("activation offloading: %s to CPU memory", "every saved activation"
             if mode == "all_saved" else "each decoder layer's input (layers recomputed)")
    return ActivationOffload(model, mode)


def forward_context(offload: ActivationOffload | None):
    return offload.forward_context() if offload is not None else contextlib.nullcontext()
