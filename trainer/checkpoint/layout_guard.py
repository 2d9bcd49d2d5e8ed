"""A checkpoint resumes only in the data-parallel layout that wrote it.

FSDP2 writes its model and optimizer state sharded (`pytorch_model_fsdp_0/`, `optimizer_0/`,
torch DCP); DDP writes `optimizer.pt` beside the model files. Neither loads the other's, and
transformers fails deep inside with a missing file. ft chooses DDP or FSDP2 for an adapter
on its own (orchestrator/spec/layout_choice.py) from the spec, the GPUs and the model, so a
restart of the same job chooses the same; a spec edited between restarts, or an ft that
chose differently, is stopped here before the model loads, saying which layout wrote the
checkpoint and how to resume in it.
"""

from __future__ import annotations

from pathlib import Path

from trainer.torch_free.errors import UserError
from trainer.torch_free.training import TrainingConfig

SHARDED_MODEL_DIR = "pytorch_model_fsdp_0"
PLAIN_OPTIMIZER = "optimizer.pt"


def written_by(checkpoint: Path) -> str | None:
    """"FSDP2", "DDP" (or one process), or None when neither's files are there."""
    if (checkpoint / SHARDED_MODEL_DIR).is_dir():
        return "FSDP2"
    if (checkpoint / PLAIN_OPTIMIZER).is_file():
        return "DDP"
    return None


def check_layout(checkpoint: Path, cfg: TrainingConfig) -> None:
    """UserError when `checkpoint` was written in the other layout than `cfg` trains in
    (DeepSpeed keeps its own files and is not judged here)."""
    if cfg.deepspeed:
        return
    old, new = written_by(checkpoint), "FSDP2" if cfg.uses_fsdp else "DDP"
    if old is None or old == new:
        return
    how = ("keep FSDP2 with `fsdp_config.replicate_frozen_params: true` (or `false`)"
           if old == "FSDP2" else
           "train it without FSDP, or with `fsdp_config.replicate_frozen_params: auto` on "
           "GPUs the whole adapter model fits")
    raise UserError(f"{checkpoint} was written by {old} and this run trains with {new} (see "
                    f"the `layout:` line above); their checkpoint files differ, so it cannot "
                    f"resume. Resume in the layout it was written in: {how}; or start fresh "
                    "(point `output_dir` at a new directory)")
