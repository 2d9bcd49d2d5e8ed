"""Multi-GPU runs of the harness: `ft@NxG` = N emulated nodes of G GPUs each, through
`ft launch --backend local` (torchrun per node, FSDP2 unless the tool says `+ddp`).

Every rank is measured by the same probe as a single-GPU run (bench/probe.py). The ranks
are processes torchrun starts, so the probe reaches them through a `sitecustomize` on
their PYTHONPATH that installs it only in torchrun's workers (LOCAL_RANK set), each writing
its own file. The ranks step in lockstep (every step ends in collectives), so a step's
time is rank 0's and its useful tokens are the sum over ranks; the figure compared with one
GPU is tokens/s per GPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TOPOLOGY = re.compile(r"^(\d+)x(\d+)$")
# Modifiers that only mean something with several GPUs (a one-GPU run drops them).
MODIFIERS = ("ddp", "keep", "shard", "fsdp", "iso")
# FSDP2, full shard, per-decoder-layer wrapping: the multi-GPU configuration the README
# documents (and tests/test_gpu.py runs); sharded checkpoints.
FSDP2_KEYS = {"fsdp": ["full_shard", "auto_wrap"], "fsdp_config": {"fsdp_version": 2}}

_SITECUSTOMIZE = '''\
import os
import sys

# Only torchrun's workers (LOCAL_RANK set); ft launch, ft node and torchrun itself stay bare.
if os.environ.get("FT_BENCH_PROBE") and os.environ.get("LOCAL_RANK") is not None:
    sys.path.insert(0, {bench!r})
    import probe

    probe.install(os.environ["FT_BENCH_PROBE"].format(rank=os.environ.get("RANK", "0")))
'''


def topology(spec: str | None) -> tuple[int, int] | None:
    """'2x1' -> (2 nodes, 1 GPU each); None for a single-process run."""
    if spec is None:
        return None
    match = TOPOLOGY.match(spec)
    if not match:
        raise SystemExit(f"unknown topology @{spec}: use @NODESxGPUS, e.g. @1x2 or @2x1")
    return int(match.group(1)), int(match.group(2))


def sharding_keys(topo: tuple[int, int] | None, mods: set[str]) -> dict:
    """The spec keys of a multi-GPU tool: FSDP2 settings unless `ddp`; `keep` = no
    resharding; `shard` = the frozen base sharded too; `fsdp` = FSDP2 with the frozen base
    replicated (default: ft's `auto`, which trains with DDP when the model fits each GPU)."""
    if topo is None or "ddp" in mods:
        return {}
    config = dict(FSDP2_KEYS["fsdp_config"])
    if "keep" in mods:
        config["reshard_after_forward"] = False
    if "shard" in mods:
        config["replicate_frozen_params"] = False
    elif "fsdp" in mods:
        config["replicate_frozen_params"] = True
    return {**FSDP2_KEYS, "fsdp_config": config}


def world_size(topo: tuple[int, int]) -> int:
    nodes, gpus = topo
    return nodes * max(gpus, 1)  # 0 GPUs: one CPU process per node


def probe_site(work: Path, bench: Path) -> Path:
    site = work / "probe-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(bench=str(bench)))
    return site


def launch_cmd(python: str, spec: Path, topo: tuple[int, int], isolate: bool) -> list[str]:
    nodes, gpus = topo
    return [python, "-m", "orchestrator.cli", "launch", str(spec), "--backend", "local",
            "--nodes", str(nodes), "--gpus-per-node", str(gpus),
            "--isolate" if isolate else "--no-isolate"]


def rank_files(template: str, world: int) -> list[Path]:
    return [Path(template.format(rank=rank)) for rank in range(world)]


def combine(records: list[dict]) -> dict:
    """One probe record for the whole job: rank 0's step times and losses, every rank's
    useful and batch tokens summed per step, the largest peak memory of any rank."""
    first = records[0]
    steps = min(len(r["step_s"]) for r in records)
    combined = dict(first)
    combined["step_s"] = first["step_s"][:steps]
    combined["step_end_t"] = first["step_end_t"][:steps]
    for key in ("useful", "batch_tokens"):
        combined[key] = [sum(r[key][i] for r in records) for i in range(steps)]
    for key in ("peak_alloc_gib", "peak_reserved_gib"):
        values = [r[key] for r in records if r.get(key) is not None]
        combined[key] = max(values) if values else None
    combined["per_rank_peak_alloc_gib"] = [r.get("peak_alloc_gib") for r in records]
    return combined


def read_ranks(template: str, world: int) -> dict | None:
    files = rank_files(template, world)
    if not all(f.exists() for f in files):
        return None
    return combine([json.loads(f.read_text()) for f in files])
