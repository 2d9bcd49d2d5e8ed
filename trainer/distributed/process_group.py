"""Joining the job's process group, with a finite collective timeout, before anything else.

A peer that hangs (a stuck GPU, a frozen host) must end the job, not stall every other rank
forever. transformers passes `ddp_timeout` to the process group on GPUs only, so ft creates
the group itself, first; accelerate, the Trainer and DeepSpeed then reuse it. With NCCL the
timeout takes effect through async error handling (TORCH_NCCL_ASYNC_ERROR_HANDLING=1, which
every cluster profile exports).

The timeouts come from `launch.timeouts` (trainer/torch_free/liveness.py says why two windows):
the group starts with the slow-phase one (start-up, resume, first step), `CollectiveWindows`
switches to the steady one after the first step and back around each save. A peer that is
gone is found sooner, in every phase, by the heartbeats of trainer/distributed/peer_watch.py;
`CollectiveWindows` also tells them the step this rank is in and whether it is in a slow
phase, so that a rank the others wait for is named (trainer/distributed/step_progress.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from trainer.distributed.collective_failure import end_if_collective_failed
from trainer.distributed.fsdp import offloads_params
from trainer.distributed.nccl_log import transport_report
from trainer.distributed.peer_watch import PeerWatch
from trainer.distributed.step_progress import StepProgress
from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free.errors import UserError
from trainer.torch_free.liveness import (
    COLLECTIVE_ENV,
    DEFAULT_COLLECTIVE,
    DEFAULT_PEER,
    DEFAULT_PROGRESS,
    DEFAULT_SLOW_PHASE,
    PEER_ENV,
    PROGRESS_ENV,
    SLOW_PHASE_ENV,
    seconds,
)
from trainer.torch_free.training import TrainingConfig

_watch: PeerWatch | None = None


def _collective_count() -> int:
    return dist.distributed_c10d._get_default_group()._get_sequence_number_for_group()


_progress = StepProgress(_collective_count)  # where this rank is, stamped with its heartbeat


def collective_timeout_s(cfg: TrainingConfig) -> int:
    """Steady state: the spec's `ddp_timeout` (Axolotl's key), else `launch.timeouts.collective`
    (ft node sets FT_COLLECTIVE_TIMEOUT_S from it)."""
    return cfg.ddp_timeout or _env_s(COLLECTIVE_ENV, DEFAULT_COLLECTIVE)


def slow_phase_timeout_s(cfg: TrainingConfig) -> int:
    """Start-up and saves: `launch.timeouts.slow_phase`, never shorter than steady state."""
    return max(_env_s(SLOW_PHASE_ENV, DEFAULT_SLOW_PHASE), collective_timeout_s(cfg))


def _env_s(name: str, default: str, least: int = 1) -> int:
    value = os.environ.get(name) or str(seconds(default))
    if not value.isdigit() or int(value) < least:
        raise UserError(f"{name}={value!r}: give whole seconds ({least} or more), or leave it "
                        "unset and set `launch.timeouts` in the spec")
    return int(value)


def join_process_group(cfg: TrainingConfig, world: WorldRanks) -> None:
    """Under torchrun (WORLD_SIZE > 1), with the spec's timeouts and the peer heartbeats; a
    single process has no group (the Trainer runs without one)."""
    global _watch
    if not world.distributed or dist.is_initialized():
        return
    steady, slow, peer = (collective_timeout_s(cfg), slow_phase_timeout_s(cfg),
                          _env_s(PEER_ENV, DEFAULT_PEER))
    progress = _env_s(PROGRESS_ENV, DEFAULT_PROGRESS, least=0)  # 0: off
    init_world(slow, world, cpu_collectives=offloads_params(cfg))
    _watch = PeerWatch(world, peer, os.environ, _progress, progress)
    _watch.start()
    if world.is_main:
        lag = (f"a rank that the others wait for in a collective for max(5 x the median step "
               f"time, {progress} s) is named and ends the job" if progress else
               "a rank that never joins a collective is left to the collective timeout")
        print(f"ft: collectives time out after {steady} s in steady training, {slow} s during "
              f"start-up and saves; a peer silent for {peer} s is named and ends the job; "
              f"{lag} (launch.timeouts)", flush=True)


def end_on_collective_failure(exc: BaseException) -> None:
    """A collective that failed ends this rank with PEER_LOST_EXIT_CODE, naming the node at
    the other end (trainer/distributed/collective_failure.py); other errors return."""
    end_if_collective_failed(_watch, exc)


def leave_process_group() -> None:
    """The orderly end: stop the heartbeats (peers stop expecting them), then the group."""
    global _watch
    if _watch is not None:
        _watch.finish()
        _watch = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class CollectiveWindows(TrainerCallback):
    """The slow-phase timeout until the first step is done and around every save (the
    others wait in a barrier while a checkpoint is written), the steady one otherwise.
    Placed after the callbacks that decide to save (GracefulStop), so it sees their word."""

    def __init__(self, cfg: TrainingConfig):
        self.steady, self.slow = collective_timeout_s(cfg), slow_phase_timeout_s(cfg)
        self.current = self.slow  # what join_process_group started the group with

    def on_step_begin(self, args, state, control, **kwargs):
        _progress.begin(state.global_step + 1)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        self._use(self.slow if control.should_save else self.steady)
        _progress.slow_phase(bool(control.should_save))
        return control

    def on_save(self, args, state, control, **kwargs):
        self._use(self.steady)
        _progress.slow_phase(False)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self._use(self.slow)  # the final model is saved next
        _progress.slow_phase(True)
        return control

    def _use(self, timeout_s: int) -> None:
        if timeout_s != self.current and dist.is_available() and dist.is_initialized():
            _set_timeout(timedelta(seconds=timeout_s))
        self.current = timeout_s


def _set_timeout(timeout: timedelta) -> None:
    """On every group: FSDP's device mesh (HYBRID_SHARD) makes sub-groups, which took the
    start-up timeout when they were made."""
    c10d = dist.distributed_c10d
    c10d._set_pg_timeout(timeout)
    default = c10d._get_default_group()
    for group in list(getattr(getattr(c10d, "_world", None), "pg_map", None) or []):
        if group is not default:
            # Best effort: a sub-group keeps its start-up timeout, and heartbeats still
            # find a silent peer in `peer` seconds.
            with contextlib.suppress(RuntimeError, ValueError):
                c10d._set_pg_timeout(timeout, group)


def init_world(timeout_s: float, world: WorldRanks, cpu_collectives: bool = False) -> torch.device:
    """This rank's device, and the process group on it: NCCL bound to the local GPU (eager
    init, so a missing peer fails here), else gloo. With NCCL, one small all-reduce
    connects the ranks (NCCL connects lazily) and each node says which transport NCCL
    chose, before anything else runs.

    `cpu_collectives`: FSDP2 with parameters offloaded keeps the sharded gradients in CPU
    memory, and the gradient norm's all-reduce runs on them; NCCL has no CPU tensors, so
    the group also gets gloo for the CPU (as torchtitan does for offloading)."""
    timeout = timedelta(seconds=timeout_s)
    if torch.cuda.is_available():
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "cuda:nccl,cpu:gloo" if cpu_collectives else "nccl"
        dist.init_process_group(backend, timeout=timeout, device_id=device)
        report_transport(world, device)
        return device
    dist.init_process_group("gloo", timeout=timeout)
    return torch.device("cpu")


def report_transport(world: WorldRanks, device: torch.device) -> None:
    """Every rank takes part in the all-reduce (collectives match by order); local rank 0 of
    each node then reads its NCCL log (trainer/distributed/nccl_log.py)."""
    probe = torch.zeros(1, device=device)
    dist.all_reduce(probe)
    torch.cuda.synchronize(device)
    nodes = max(world.world_size // max(world.local_world_size, 1), 1)
    for line in transport_report(os.environ, socket.gethostname(), os.getpid(), nodes,
                                 world.local_rank, world.rank):
        print(f"ft: node {world.node_rank}: {line}", flush=True)
