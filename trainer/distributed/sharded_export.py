"""The final model of a full fine-tune that FSDP2 sharded, written one tensor at a time.

torch's full state dict (`get_model_state_dict(full_state_dict=True)`) gathers the whole
model onto rank 0's host before a byte is written: ~280 GB of fp32 master weights for a 70B
model. Here every rank takes part in one DTensor's `full_tensor()` at a time, in the model's
state-dict order (the same on every rank, so the collectives match); rank 0 appends the
tensor to the current safetensors shard and writes the shard once it is full, so its host
memory holds at most one shard plus the tensor in flight.

Dtype: FSDP trains fp32 master weights (trainer/distributed/fsdp.py `_upcast_trainable`) while the
model computes in the plan's `param_dtype` (bf16 on a GPU); the export writes each floating
parameter in that training dtype (half the size of the fp32 masters), buffers as they are.
Each rank casts its own shard before the gather, which also halves the traffic.

Layout: transformers' own, so `from_pretrained` loads it: `model.safetensors`, or
`model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`; tied weights once,
under the name transformers keeps; config.json naming the dtype written; generation config;
tokenizer. A model whose save renames or converts weights (transformers 5's checkpoint
conversion mappings, e.g. fused MoE experts written back per expert) cannot be written
tensor by tensor: it falls back to the whole-model gather and `save_pretrained`, with the
same cast, and the log says so. Llama, Mistral and Qwen have no such mapping.

FT_EXPORT_MAX_SHARD_BYTES sets the shard size (default 5 GB, decimal, as transformers'
"5GB"); a tensor larger than that gets a shard of its own.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trainer.distributed.host_memory import PeakRss
from trainer.torch_free.errors import UserError

log = logging.getLogger("ft.export")

MAX_SHARD_ENV = "FT_EXPORT_MAX_SHARD_BYTES"
DEFAULT_MAX_SHARD_BYTES = 5 * 10**9
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# What an earlier save into the same directory may have left: a stale shard would be listed
# in the completion marker and confuse anyone reading the directory.
_WEIGHT_FILE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")


@dataclass(frozen=True)
class Entry:
    """One tensor to write: its saved name, the (sharded or plain) tensor, the dtype written."""

    name: str
    tensor: torch.Tensor
    dtype: torch.dtype
    is_param: bool

    @property
    def nbytes(self) -> int:
        return self.tensor.numel() * self.dtype.itemsize  # a DTensor's numel is the global one


def saved_dtype(stored: torch.dtype, is_param: bool,
                param_dtype: torch.dtype | None) -> torch.dtype:
    """The dtype a tensor is written in: a floating parameter in the training (compute)
    dtype when the plan has one, anything else (buffers, integer tensors) as stored."""
    if is_param and param_dtype is not None and stored.is_floating_point:
        return param_dtype
    return stored


def max_shard_bytes(environ: dict[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(MAX_SHARD_ENV)
    if raw is None:
        return DEFAULT_MAX_SHARD_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{MAX_SHARD_ENV}={raw!r}: give the shard size as a positive whole "
                        f"number of bytes (default {DEFAULT_MAX_SHARD_BYTES})")
    return value


def export_full_model(model: nn.Module, output_dir: Path, param_dtype: torch.dtype | None, *,
                      is_main: bool, tokenizer=None, shard_bytes: int | None = None) -> None:
    """Every rank calls it (each takes part in every gather); `is_main` writes the files."""
    limit = shard_bytes or max_shard_bytes()
    started, memory = time.monotonic(), PeakRss() if is_main else None
    entries = plan_entries(model, param_dtype)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        _remove_weight_files(output_dir)
    conversion = save_conversion(model, entries)
    if conversion is not None and is_main:
        log.warning("saving the whole model at once: %s, which only transformers' "
                    "save_pretrained reproduces (rank 0 holds the full model in host memory)",
                    conversion)
    shards = stream_shards(entries, output_dir, limit, is_main) if conversion is None \
        else _gather_whole_and_save(model, entries, output_dir, limit, is_main)
    if not is_main:
        return
    dtype = next((e.dtype for e in entries if e.is_param and e.dtype.is_floating_point),
                 model.dtype)
    write_config(model, output_dir, dtype)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    log.info("saved the model: %d tensors in %d shard(s), %s, %s, in %.1f s; rank 0 host "
             "memory (RSS) peak +%s during the save", len(entries), shards,
             _size(sum(e.nbytes for e in entries)), str(dtype).removeprefix("torch."),
             time.monotonic() - started, _size(memory.growth_bytes()))


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count / 1e3:.1f} kB"


def plan_entries(model: nn.Module, param_dtype: torch.dtype | None) -> list[Entry]:
    """The state dict's tensors in its order, minus `_keys_to_ignore_on_save`, each tied
    group once. Tied names are one Parameter object (FSDP2 keeps them so); transformers
    drops the tied targets (`lm_head.weight` tied to `model.embed_tokens.weight`) and
    re-ties them on load."""
    params = {id(p) for p in model.parameters()}
    ignored = set(getattr(model, "_keys_to_ignore_on_save", None) or ())
    groups: dict[int, list[str]] = {}
    state = model.state_dict(keep_vars=True)
    for name, tensor in state.items():
        if name not in ignored:
            groups.setdefault(id(tensor), []).append(name)
    targets = set(getattr(model, "all_tied_weights_keys", None)
                  or getattr(model, "_tied_weights_keys", None) or ())
    entries = []
    for key, names in groups.items():
        name = _kept_name(names, targets)
        tensor = state[name]
        is_param = key in params
        entries.append(Entry(name, tensor, saved_dtype(tensor.dtype, is_param, param_dtype),
                             is_param))
    return entries


def _kept_name(names: list[str], tied_targets: set[str]) -> str:
    """transformers' choice (`remove_tied_weights_from_state_dict`): a name that is not a
    tied target, else the last one in sorted order."""
    sources = [n for n in names if n not in tied_targets]
    return sources[0] if sources else sorted(names)[-1]


def save_conversion(model: nn.Module, entries: list[Entry]) -> str | None:
    """Why the tensors cannot be written under their own names, or None. transformers'
    own `revert_weight_conversion` is run on meta stand-ins: if it hands every tensor back
    unchanged under the same name, save_pretrained would write exactly the state dict."""
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # no save-time conversions in this transformers
        return None
    probe = {e.name: torch.empty(e.tensor.shape, dtype=e.dtype, device="meta")
             for e in entries}
    try:
        reverted = revert_weight_conversion(model, dict(probe))
    except Exception as exc:  # a conversion that cannot run on meta tensors
        return f"its save-time weight conversion could not be checked ({exc})"
    if reverted.keys() == probe.keys() and all(reverted[k] is v for k, v in probe.items()):
        return None
    changed = sorted(set(reverted) - set(probe)) or \
        [k for k, v in probe.items() if reverted.get(k) is not v]
    return f"its save renames or converts weights (e.g. it writes {changed[0]})"


def plan_shards(entries: list[Entry], limit: int) -> list[list[Entry]]:
    """Consecutive runs of at most `limit` bytes (one tensor larger than that: on its own),
    as huggingface_hub's `split_torch_state_dict_into_shards` cuts them."""
    shards: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        if shards[-1] and size + entry.nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += entry.nbytes
    return shards


def shard_file_names(count: int) -> list[str]:
    if count == 1:
        return [WEIGHTS_NAME]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def stream_shards(entries: list[Entry], output_dir: Path, limit: int, is_main: bool) -> int:
    """Gather, cast and write shard by shard; returns the number of shard files."""
    from safetensors.torch import save_file

    shards = plan_shards(entries, limit)
    files = shard_file_names(len(shards))
    for file, shard in zip(files, shards, strict=True):
        held: dict[str, torch.Tensor] = {}
        for entry in shard:
            full = full_tensor(entry)  # every rank: a collective
            if is_main:
                held[entry.name] = full.to("cpu").contiguous()
            del full
        if is_main:
            save_file(held, str(output_dir / file), metadata={"format": "pt"})
        del held  # rank 0 frees the shard before gathering the next one
    if is_main and len(shards) > 1:
        _write_index(output_dir, shards, files)
    return len(shards)


def full_tensor(entry: Entry) -> torch.Tensor:
    """The whole tensor in its saved dtype (every rank gets it; only rank 0 keeps it)."""
    from torch.distributed.tensor import DTensor

    tensor = entry.tensor.detach()
    if not isinstance(tensor, DTensor):  # outside FSDP (replicated): whole on every rank
        return tensor.to(entry.dtype)
    mesh = tensor.device_mesh
    local = tensor.to_local()
    if local.device.type != mesh.device_type:  # offloaded shards: NCCL gathers GPU memory
        tensor = DTensor.from_local(local.to(mesh.device_type), mesh, tensor.placements,
                                    run_check=False, shape=tensor.shape,
                                    stride=tensor.stride())
    return tensor.to(entry.dtype).full_tensor()


def _write_index(output_dir: Path, shards: list[list[Entry]], files: list[str]) -> None:
    """transformers' index: `metadata.total_size` (bytes) and `weight_map` (name -> file)."""
    entries = [e for shard in shards for e in shard]
    index = {"metadata": {"total_parameters": sum(e.tensor.numel() for e in entries
                                                  if e.is_param),
                          "total_size": sum(e.nbytes for e in entries)},
             "weight_map": {e.name: file for shard, file in zip(shards, files, strict=True)
                            for e in shard}}
    (output_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def write_config(model: nn.Module, output_dir: Path, dtype: torch.dtype) -> None:
    """config.json as save_pretrained writes it, but naming the dtype actually written
    (save_pretrained would name the fp32 masters' dtype); generation config; the model's
    code for a remote-code model."""
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__.removeprefix("FSDP")]  # fully_shard's class
    config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(output_dir)
    if model.can_generate() and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(output_dir)
    if getattr(model, "is_remote_code", lambda: False)():
        from transformers.dynamic_module_utils import custom_object_save

        custom_object_save(model, output_dir, config=config)


def _gather_whole_and_save(model: nn.Module, entries: list[Entry], output_dir: Path,
                           limit: int, is_main: bool) -> int:
    """The fallback: torch's full state dict on rank 0, cast, then save_pretrained, which
    applies the model's save-time conversions. Returns the number of shard files."""
    from trainer.distributed.fsdp import gather_state_dict

    state = gather_state_dict(model, trainable_only=False, rank=torch.distributed.get_rank())
    if not is_main:
        return 0
    # Only the kept name of each tied group: the casts would untie them, and transformers
    # would then write both copies.
    state = {e.name: state[e.name].to(e.dtype) for e in entries if e.name in state}
    model.save_pretrained(output_dir, state_dict=state, safe_serialization=True,
                          max_shard_size=limit)
    return sum(1 for p in output_dir.glob("model*.safetensors"))


def _remove_weight_files(output_dir: Path) -> None:
    for path in output_dir.iterdir():
        if path.is_file() and _WEIGHT_FILE.match(path.name):
            path.unlink()
