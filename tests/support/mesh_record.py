"""What each rank holds at the end of training: every parameter's DTensor layout (mesh shape,
dim names, placements), the shape and a digest of its local shard, whether the output
embeddings are still the input embeddings (a tied model), the wrapper the Trainer trained
through (`model_wrapped`: DistributedDataParallel under DDP) and how many modules FSDP2
wrapped.

Installed through ft's general hook, FT_TRAINER_HOOKS=tests.support.mesh_record:install, so
the product carries no test instrumentation. The HSDP test reads it to prove a weight is
split over one node's ranks and repeated across nodes; the tied-embeddings test, that the
tie survived sharding and training on every rank; the automatic-layout test, that DDP
really trained (no FSDP module anywhere), not FSDP2 under another name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from transformers import TrainerCallback

HOOK = "tests.support.mesh_record:install"


def record_path(output_dir: Path, rank: int) -> Path:
    return Path(output_dir) / f"ft-mesh-rank{rank}.json"


def read_record(output_dir: Path, rank: int) -> dict:
    return json.loads(record_path(output_dir, rank).read_text())


def install(trainer) -> None:
    trainer.add_callback(_Record(trainer))


class _Record(TrainerCallback):
    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        from torch.distributed.fsdp import FSDPModule

        model = self.trainer.model
        record = {"tied": _tied(model), "params": {name: _layout(param) for name, param
                                                   in model.named_parameters()},
                  "wrapped": type(self.trainer.model_wrapped).__name__,
                  "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules())}
        record_path(args.output_dir, args.process_index).write_text(json.dumps(record))


def _layout(param) -> dict:
    from torch.distributed.tensor import DTensor

    local = param.to_local() if isinstance(param, DTensor) else param
    out = {"local_shape": list(local.shape), "full_shape": list(param.shape),
           "sha1": hashlib.sha1(_raw_bytes(local)).hexdigest()}
    if isinstance(param, DTensor):
        mesh = param.device_mesh
        out.update(mesh_shape=list(mesh.shape), dim_names=list(mesh.mesh_dim_names or ()),
                   placements=[repr(p) for p in param.placements])
    return out


def _raw_bytes(tensor) -> bytes:
    """The tensor's bytes as stored (numpy has no bfloat16, so read them as uint8)."""
    import torch

    return tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()


def _tied(model) -> bool | None:
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if inputs is None or outputs is None:
        return None
    return inputs.weight is outputs.weight
