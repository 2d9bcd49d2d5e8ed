"""Optional record of which rows each rank trained on (FT_RECORD_SAMPLES=1).

Multi-node tests use it to prove the data is sharded: every rank sees different rows and
together they see the whole data set. Off by default: it costs a hash per row.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from trainer.fsdp import is_sharded
from trainer.ft_trainer import FtTrainer


def ledger_path(output_dir: Path, rank: int) -> Path:
    return output_dir / f"ft-samples-rank{rank}.jsonl"


def shards_path(output_dir: Path, rank: int) -> Path:
    return output_dir / f"ft-final-shards-rank{rank}.pt"


def recording_enabled() -> bool:
    return os.environ.get("FT_RECORD_SAMPLES") == "1"


class LedgerTrainer(FtTrainer):
    """A Trainer that appends a hash of every training row it steps on to a per-rank file."""

    def training_step(self, model, inputs, *args, **kwargs):
        path = ledger_path(Path(self.args.output_dir), self.args.process_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            for row in inputs["input_ids"].tolist():
                digest = hashlib.sha1(json.dumps(row).encode()).hexdigest()
                handle.write(json.dumps({"step": self.state.global_step, "sha1": digest}) + "\n")
        return super().training_step(model, inputs, *args, **kwargs)

    def record_final_weights(self) -> None:
        """A digest of the weights this rank would save: equal on every rank after
        data-parallel training, and equal to the digest of what rank 0 saved.

        A sharded model has no whole weights on any rank: each rank writes its own local
        shards instead, so a test can stitch them together independently of ft's gather."""
        if is_sharded(self.model):
            shards = {name: param.to_local().detach().cpu().clone()
                      for name, param in self.model.named_parameters() if param.requires_grad}
            torch.save(shards, shards_path(Path(self.args.output_dir), self.args.process_index))
            return
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "peft_config"):
            from peft import get_peft_model_state_dict

            state = get_peft_model_state_dict(model)
        else:
            state = model.state_dict()
        path = Path(self.args.output_dir) / f"ft-final-rank{self.args.process_index}.sha1"
        path.write_text(weights_digest(state))


def weights_digest(state: dict) -> str:
    """sha1 over (name, float32 bytes) in name order; a saved safetensors file gives the same."""
    digest = hashlib.sha1()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
