"""Whether a directory named in `resume_from_checkpoint` holds a checkpoint the Trainer can
load, read without torch: `ft validate` and `ft train` ask this before any work, so a wrong
path or a directory of junk is an error naming the file, not a safetensors traceback after
the model has loaded.

What is checked is what resuming reads first: the Trainer's state (step, schedule), weights
the transformers Trainer recognises (its `_load_from_checkpoint`), every safetensors file's
header and length (safetensors itself refuses a file whose tensors do not end exactly at its
end), and every JSON file ft or the Trainer wrote there. A checkpoint ft marked complete is
verified against its marker by trainer/checkpoint/resume.py as well.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

# Files the Trainer resumes model or adapter weights from (transformers' *_NAME constants).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")
TRAINER_STATE = "trainer_state.json"  # every Trainer checkpoint has it; resume reads it
# Sharded model state in a directory: accelerate's FSDP (pytorch_model_fsdp_0/), DeepSpeed's.
SHARDED_MODEL_DIRS = ("pytorch_model_fsdp", "global_step")
_MAX_HEADER = 100 << 20  # safetensors' own limit on the header


def loadable_problem(directory: Path) -> str | None:
    """Why `directory` cannot be resumed from, or None when it looks like a checkpoint."""
    if not directory.is_dir():
        return "is not a directory" if directory.exists() else "does not exist"
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    sharded = any(name.startswith(SHARDED_MODEL_DIRS) and (directory / name).is_dir()
                  for name in names)
    if not sharded and not any(name in names for name in WEIGHT_FILES):
        return ("holds no model or adapter weights (model.safetensors, adapter_model."
                "safetensors, pytorch_model.bin or an FSDP pytorch_model_fsdp_0/): it is not a "
                "checkpoint of a training run")
    if TRAINER_STATE not in names:  # weights alone: a final model, which resumes nothing
        return (f"has no {TRAINER_STATE}: it holds a model, not a checkpoint of a training "
                "run (its `checkpoint-N` directories are)")
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        if not os.access(path, os.R_OK):
            return f"{name} cannot be read (permission denied)"
        problem = None
        if name.endswith(".safetensors"):
            problem = safetensors_problem(path)
        elif name.endswith(".json"):
            problem = _json_problem(path)
        if problem:
            return f"{name} {problem}"
    return None


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a whole safetensors file, or None."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"is not a safetensors file ({size} bytes)"
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            return "is not a safetensors file (its first bytes are not a safetensors header)"
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            return "is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not a JSON object)"
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict)
            and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return (f"is {size} bytes where its header describes {expected}: truncated or "
                "overwritten")
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"is not valid JSON ({exc})"
    return None
