"""Graceful stop on SIGTERM / SIGUSR1 (preemption, Slurm's --signal, a time limit).

The signal only sets a flag; at the end of the current optimizer step every rank agrees
(one scalar all-reduce) to save a normal, complete checkpoint and stop, so no rank waits on
a collective the others will never join. The run then exits with PREEMPTED_EXIT_CODE, which
the backends retry, and `resume_from_checkpoint: auto` continues from that checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from trainer.contract.exit_codes import (
    FINISHED_REPORT,
    RESUMABLE_EXIT_CODE,
    STOP_REPORT,
    STOP_REPORT_DIR,
)

log = logging.getLogger("ft.preemption")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# The documented "stopped cleanly, resumable" code (see trainer.contract.exit_codes).
PREEMPTED_EXIT_CODE = RESUMABLE_EXIT_CODE


class GracefulStop(TrainerCallback):
    """Installed when `ft train` starts and released when it ends (`release`): a signal
    while data and model load is acted on at the end of the first step; one after the last
    step (the time limit or a preemption that comes while the final model is saved) lets the
    run finish instead of killing a rank of a completed run."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped = False
        self.finishing = False
        self.last_step = 0
        self._previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self.finishing:
            log.warning("%s received after the last step: finishing the final save; the run "
                        "is complete", signal.Signals(signum).name)
            return
        self.requested = True
        log.warning("%s received: saving a checkpoint at the end of this step, then stopping",
                    signal.Signals(signum).name)

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed():
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.finishing, self.last_step = True, state.global_step
        return control

    def release(self) -> None:
        """Outside `ft train` a signal stops the process as usual again."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _agreed(self) -> bool:
        """True on every rank if any rank was signalled."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def report_clean_stop(step: int) -> None:
    """Tell `ft node` this rank saved a complete checkpoint and stops to be resumed (torchrun
    turns our exit code into its own 1, so the code alone cannot say it)."""
    _report(STOP_REPORT, step)


def report_finished(step: int) -> None:
    """Tell `ft node` this rank completed training (final model saved): whatever torchrun
    says afterwards (a late stop signal, its exit barrier), this node's run is done."""
    _report(FINISHED_REPORT, step)


def _report(name: str, step: int) -> None:
    directory = os.environ.get(STOP_REPORT_DIR)
    if not directory:
        return  # not under ft node (a plain `ft train`): the exit code says it all
    rank = os.environ.get("RANK", "0")
    path = Path(directory) / name.format(rank=rank)
    path.write_text(json.dumps({"rank": int(rank), "step": step}))
