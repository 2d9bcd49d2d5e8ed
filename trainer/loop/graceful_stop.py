"""Graceful stop on SIGTERM / SIGINT / SIGUSR1 (preemption, a scheduler's warning signal, a
time limit, Ctrl-C), at any moment from the rank's start to its final save.

The signal only sets a flag (trainer.loop.stop_signals, installed at the top of `ft train`); the
ranks act on it where they all pass, agreeing with one scalar all-reduce so no rank waits on
a collective the others will never join:

- before training (after joining the process group, after the data, after the model): stop
  with nothing to save yet (a restart loses nothing: prepared data is cached);
- at the end of every optimizer step: save a normal, complete checkpoint and stop;
- after the last step: finish the run (final model saved) instead of killing a rank of a
  completed run.

Either stop exits with PREEMPTED_EXIT_CODE, which the backends retry, and
`resume_from_checkpoint: auto` continues from the newest checkpoint.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from trainer.loop.stop_signals import STOPS, StopSignals, report_to_node
from trainer.torch_free.exit_codes import FINISHED_REPORT, RESUMABLE_EXIT_CODE, STOP_REPORT

log = logging.getLogger("ft.preemption")

# The documented "stopped cleanly, resumable" code (see trainer.torch_free.exit_codes).
PREEMPTED_EXIT_CODE = RESUMABLE_EXIT_CODE


class StoppedBeforeTraining(Exception):
    """Every rank agreed to stop before step 1: nothing to save, exit resumable."""


class GracefulStop(TrainerCallback):
    """Acts on the process's stop signals (`signals`, installed already or here)."""

    def __init__(self, signals: StopSignals = STOPS) -> None:
        self.signals = signals
        self.stopped = False
        self.last_step: int | None = None  # None: stopped before step 1
        signals.install()

    @property
    def finishing(self) -> bool:
        return self.signals.phase == "finishing"

    def stop_if_requested(self, where: str) -> None:
        """Before training: raise StoppedBeforeTraining on every rank if any was signalled."""
        if self._agreed():
            log.warning("stop requested (%s) %s: nothing to save yet",
                        self.signals.received or "on another rank", where)
            raise StoppedBeforeTraining(where)

    def begin_training(self) -> None:
        """From here a stop saves at the end of the step; one that came before does not."""
        self.signals.phase = "training"
        self.stop_if_requested("before step 1")

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed():
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.signals.phase, self.last_step = "finishing", state.global_step
        return control

    def release(self) -> None:
        self.signals.release()

    def _agreed(self) -> bool:
        """True on every rank if any rank was signalled."""
        requested = self.signals.requested
        if not (dist.is_available() and dist.is_initialized()):
            return requested
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1.0 if requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def report_clean_stop(step: int | None) -> int:
    """Tell `ft node` this rank stopped cleanly, to be resumed; returns the rank's exit code.
    torchrun turns any non-zero exit into its own 1 and prints a ChildFailedError traceback
    for it, so under ft node the rank says it here and exits 0: ft node, reading every
    rank's report, turns the node's exit into PREEMPTED_EXIT_CODE. Alone, the code says it."""
    return 0 if _report(STOP_REPORT, step) else PREEMPTED_EXIT_CODE


def report_finished(step: int) -> None:
    """Tell `ft node` this rank completed training (final model saved): whatever torchrun
    says afterwards (a late stop signal, its exit barrier), this node's run is done."""
    _report(FINISHED_REPORT, step)


def _report(name: str, step: int | None) -> bool:
    return report_to_node(name, {"step": step})  # step None: nothing saved
