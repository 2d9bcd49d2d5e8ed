"""Joining the job's process group, with a finite collective timeout, before anything else.

A peer that hangs (a stuck GPU, a frozen host) must end the job, not stall every other rank
forever. transformers passes `ddp_timeout` to the process group on GPUs only, so ft creates
the group itself, first; accelerate, the Trainer and DeepSpeed then reuse it. With NCCL the
timeout takes effect through async error handling (TORCH_NCCL_ASYNC_ERROR_HANDLING=1, which
every cluster profile exports).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist

from trainer.contract.training import TrainingConfig
from trainer.fsdp import offloads_params
from trainer.nccl_log import transport_report
from trainer.world import World

DEFAULT_COLLECTIVE_TIMEOUT_S = 1800


def collective_timeout_s(cfg: TrainingConfig) -> int:
    """The spec's `ddp_timeout`, else FT_COLLECTIVE_TIMEOUT_S (set by the cluster profile)."""
    return cfg.ddp_timeout or int(os.environ.get("FT_COLLECTIVE_TIMEOUT_S",
                                                 DEFAULT_COLLECTIVE_TIMEOUT_S))


def join_process_group(cfg: TrainingConfig, world: World) -> None:
    """Under torchrun (WORLD_SIZE > 1), with the spec's timeout; a single process has no
    group (the Trainer runs without one)."""
    if not world.distributed or dist.is_initialized():
        return
    init_world(collective_timeout_s(cfg), world, cpu_collectives=offloads_params(cfg))


def init_world(timeout_s: float, world: World, cpu_collectives: bool = False) -> torch.device:
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


def report_transport(world: World, device: torch.device) -> None:
    """Every rank takes part in the all-reduce (collectives match by order); local rank 0 of
    each node then reads its NCCL log (trainer/nccl_log.py)."""
    probe = torch.zeros(1, device=device)
    dist.all_reduce(probe)
    torch.cuda.synchronize(device)
    nodes = max(world.world_size // max(world.local_world_size, 1), 1)
    for line in transport_report(os.environ, socket.gethostname(), os.getpid(), nodes,
                                 world.local_rank, world.rank):
        print(f"ft: node {world.node_rank}: {line}", flush=True)
