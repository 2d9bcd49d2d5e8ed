"""How each rank's model was wrapped for training: the wrapper the Trainer trained through
(`model_wrapped`: DistributedDataParallel under DDP) and how many modules FSDP2 wrapped.

Installed through ft's general hook, FT_TRAINER_HOOKS=tests.support.wrapper_record:install,
so the product carries no test instrumentation. The automatic-layout test reads it to prove
DDP really trained (no FSDP module anywhere), not FSDP2 under another name.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

HOOK = "tests.support.wrapper_record:install"


def record_path(output_dir: Path, rank: int) -> Path:
    return Path(output_dir) / f"ft-wrapper-rank{rank}.json"


def install(trainer) -> None:
    trainer.add_callback(_Record(trainer))


class _Record(TrainerCallback):
    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_train_end(self, args, state, control, **kwargs):
        from torch.distributed.fsdp import FSDPModule

        trainer = self.trainer
        record = {"wrapped": type(trainer.model_wrapped).__name__,
                  "fsdp_modules": sum(isinstance(m, FSDPModule)
                                      for m in trainer.model.modules())}
        record_path(args.output_dir, args.process_index).write_text(json.dumps(record))
