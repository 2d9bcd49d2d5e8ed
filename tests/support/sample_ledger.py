"""A record of which rows each rank trained on, and of the weights it ended with.

Installed through ft's general hook, FT_TRAINER_HOOKS=tests.support.sample_ledger:install,
so the product carries no test instrumentation. Multi-node tests use it to prove the data
is sharded (every rank sees different rows, together the whole data set) and that the
ranks end with the weights rank 0 saved. It costs a hash per row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import TrainerCallback

HOOK = "tests.support.sample_ledger:install"


def ledger_path(output_dir: Path, rank: int) -> Path:
    return output_dir / f"ft-samples-rank{rank}.jsonl"


def shards_path(output_dir: Path, rank: int) -> Path:
    return output_dir / f"ft-final-shards-rank{rank}.pt"


def install(trainer) -> None:
    """The FT_TRAINER_HOOKS entry point: wrap the step, record the weights at the end."""
    step = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        _record_rows(trainer, inputs["input_ids"].tolist())
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = training_step
    trainer.add_callback(FinalWeights(trainer))


def _record_rows(trainer, rows: list[list[int]]) -> None:
    path = ledger_path(Path(trainer.args.output_dir), trainer.args.process_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for row in rows:
            digest = hashlib.sha1(json.dumps(row).encode()).hexdigest()
            handle.write(json.dumps({"step": trainer.state.global_step, "sha1": digest}) + "\n")


class FinalWeights(TrainerCallback):
    """At the end of training, before ft saves: a digest of the weights this rank would
    save (equal on every rank after data-parallel training, and to what rank 0 saved).

    A sharded model has no whole weights on any rank: each rank writes its own local
    shards instead, so a test can stitch them together independently of ft's gather."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        model, output_dir = self.trainer.model, Path(args.output_dir)
        if is_sharded(model):
            shards = {name: param.to_local().detach().cpu().clone()
                      for name, param in model.named_parameters() if param.requires_grad}
            torch.save(shards, shards_path(output_dir, args.process_index))
            return
        model = self.trainer.accelerator.unwrap_model(model)
        if hasattr(model, "peft_config"):
            from peft import get_peft_model_state_dict

            state_dict = get_peft_model_state_dict(model)
        else:
            state_dict = model.state_dict()
        path = output_dir / f"ft-final-rank{args.process_index}.sha1"
        path.write_text(weights_digest(state_dict))


def is_sharded(model) -> bool:
    """FSDP2 wrapped it (the root module becomes an FSDPModule)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def weights_digest(state: dict) -> str:
    """sha1 over (name, float32 bytes) in name order; a saved safetensors file gives the same."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
