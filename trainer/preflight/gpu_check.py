"""Each GPU's matmul rate and free memory, against the job's other GPUs.

Every rank times the same short matmul loop on its own device (bf16 on a GPU, fp32 on a CPU
rank) at the same moment (after a barrier), and reads its free memory; rank 0 names each GPU
whose rate or free memory is under `launch.preflight.gpu_fraction` of the median. A GPU is
judged against its peers, never against a fixed figure: a throttled or mis-clocked card, or one
another process holds, stands out from the others whatever the machine, and a busy host
slows every rank alike.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from trainer.preflight.findings import Finding
from trainer.preflight.placement import Place, gathered, here

# The timed loop runs for about this long (whole batches, each synchronised). Long next to a
# CPU quota's period (100 ms), so that a capped rank cannot hide in one unthrottled burst.
WINDOW_S = 0.3
# (matrix size, matmuls per batch): ~1 ms per batch on one CPU core; ~15 ms on an H100.
CUDA_SHAPE, CPU_SHAPE = (8192, 8), (256, 4)
# A rate under the fraction is timed again, all ranks together, up to this many times, and
# each rank keeps its best: a burst of contention (ranks of emulated nodes share one host's
# cores; a neighbour's job on a GPU host) passes, a throttled or capped device stays slow.
RETIMES = 2


@dataclass(frozen=True)
class Reading:
    place: Place
    device: str  # what a person reads: "GPU 3" / "CPU"
    name: str  # the device's model ("NVIDIA H100 80GB HBM3"), "cpu"
    gflops: float  # matmul rate, GFLOP/s (bf16 on a GPU, fp32 on a CPU)
    free_bytes: int | None  # GPU: free memory on the device; CPU: the node's MemAvailable
    total_bytes: int | None


def check(context) -> list[Finding]:
    device, world = context.device, context.world
    memory = _memory(device)  # before the matmul's own buffers are taken
    reading = Reading(here(world), _label(device), _name(device),
                      _matmul_gflops(device, world), *memory)
    readings = gathered(reading, world)
    fraction = context.settings.gpu_fraction
    for _ in range(RETIMES):  # every rank sees the same readings, so all decide alike
        if not _slow(readings, fraction):
            break
        again = gathered(_matmul_gflops(device, world), world)
        readings = [replace(r, gflops=max(r.gflops, rate)) for r, rate in zip(readings, again,
                                                                               strict=True)]
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the buffers go back before the model loads
    if not world.is_main:
        return []
    return judge(readings, fraction)


def _slow(readings: list[Reading], fraction: float) -> bool:
    rates = statistics.median(r.gflops for r in readings)
    return len(readings) > 1 and any(r.gflops < fraction * rates for r in readings)


def judge(readings: list[Reading], fraction: float) -> list[Finding]:
    """One finding per node: ok, or the GPUs under `fraction` of the median (rate, or free
    memory on GPUs: a CPU rank's memory is the node's, shared by its ranks, and not judged)."""
    rates = statistics.median(r.gflops for r in readings)
    frees = [r.free_bytes for r in readings if r.free_bytes is not None and r.name != "cpu"]
    free_median = statistics.median(frees) if frees else None
    kind = "bf16" if readings[0].name != "cpu" else "fp32"
    findings = []
    for node, mine in _by_node(readings).items():
        problems = []
        for r in mine:
            if len(readings) > 1 and r.gflops < fraction * rates:
                problems.append(f"{r.device}: {kind} matmul {_rate(r.gflops)}, "
                                f"{r.gflops / rates:.0%} of the median {_rate(rates)}")
            if free_median and r.name != "cpu" and r.free_bytes < fraction * free_median:
                problems.append(f"{r.device}: {_gib(r.free_bytes)} free, "
                                f"{r.free_bytes / free_median:.0%} of the median "
                                f"{_gib(free_median)} (another process holds memory on it?)")
        if problems:
            detail = "; ".join(problems) + f" (launch.preflight.gpu_fraction {fraction:g})"
        else:
            detail = _summary(mine, kind, rates if len(readings) > 1 else None)
        findings.append(Finding("gpu", node, mine[0].place.host, not problems, detail,
                                {"devices": [_data(r) for r in mine], "median_gflops":
                                 round(rates, 3), "fraction": fraction}))
    return findings


def _by_node(readings: list[Reading]) -> dict[int, list[Reading]]:
    nodes: dict[int, list[Reading]] = {}
    for r in sorted(readings, key=lambda r: (r.place.node_rank, r.place.local_rank)):
        nodes.setdefault(r.place.node_rank, []).append(r)
    return nodes


def _summary(mine: list[Reading], kind: str, median: float | None) -> str:
    low, high = min(r.gflops for r in mine), max(r.gflops for r in mine)
    rate = _rate(low) if low == high else f"{_rate(low)}..{_rate(high)}"
    text = f"{len(mine)} {mine[0].device.split()[0]}(s), {kind} matmul {rate}"
    text += f" (job median {_rate(median)})" if median else " (one rank in all: nothing to " \
        "compare with)"
    frees = [r.free_bytes for r in mine if r.free_bytes is not None]
    if frees:
        what = "available on the node" if mine[0].name == "cpu" else "free (least)"
        text += f", {_gib(min(frees))} {what}"
    return text


def _data(r: Reading) -> dict:
    return {"rank": r.place.rank, "local_rank": r.place.local_rank, "device": r.device,
            "name": r.name, "gflops": round(r.gflops, 3), "free_bytes": r.free_bytes,
            "total_bytes": r.total_bytes}


def _rate(gflops: float) -> str:
    return f"{gflops / 1000:.1f} TFLOP/s" if gflops >= 1000 else f"{gflops:.1f} GFLOP/s"


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def _label(device: torch.device) -> str:
    """`GPU <index>` as this node numbers it, with the physical id CUDA_VISIBLE_DEVICES maps
    it to (what nvidia-smi calls it) when that differs."""
    if device.type != "cuda":
        return "CPU"
    index = device.index or 0
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]
    physical = visible[index] if index < len(visible) else str(index)
    return f"GPU {index}" if physical == str(index) else f"GPU {index} (physical {physical})"


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _memory(device: torch.device) -> tuple[int | None, int | None]:
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free), int(total)
    return _meminfo("MemAvailable"), _meminfo("MemTotal")


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _matmul_gflops(device: torch.device, world) -> float:
    n, batch = CUDA_SHAPE if device.type == "cuda" else CPU_SHAPE
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)

    def one_batch() -> None:
        for _ in range(batch):
            torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one_batch()  # warm-up: kernel selection, first-touch of the memory
    if world.distributed and dist.is_initialized():
        dist.barrier()  # every rank measures at the same moment (a shared host is shared alike)
    start, done = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < WINDOW_S:
        one_batch()
        done += batch
    return 2 * n**3 * done / elapsed / 1e9
