"""The GPU type a spec names (`launch.gpu`), and how many GPUs one node can have, for backends
that run on machines someone sells or rents (a backend with container limits of its own
states them in its package instead).

A spec asking for more GPUs per node than any machine has renders fine and then waits in a
queue forever, or fails at submit with "no offers" / "Requested node configuration is not
available". The facts, as of 2026:

- an NVIDIA HGX/DGX baseboard holds 8 GPUs (H100, H200, B200, B300, A100 80GB, ...);
- every cloud's largest instance has 8 GPUs of one type (AWS p5/p4d/g5/g6, Azure ND, Lambda,
  RunPod, ...), except Google Cloud's a2-megagpu-16g: 16 x A100 40GB;
- on premises (an HPC cluster, an SSH fleet, Kubernetes nodes), 16-GPU V100
  machines (DGX-2, HGX-2) and 16-GPU A100 machines exist; nothing common has more.

So: 16 for A100 and V100, 8 for every other type and for a spec that names none (say the
type in `launch.gpu` when the nodes really are 16-GPU machines).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.spec.load import Spec
from orchestrator.spec.problem_lines import located
from trainer.torch_free.errors import Problem, SpecError

DEFAULT_MAX = 8
SIXTEEN_GPU_TYPES = ("A100", "V100")  # the types 16-GPU machines are built with


@dataclass(frozen=True)
class Gpu:
    name: str
    memory: str | None  # e.g. "80GB"


def parse_gpu(spec: Spec, backend: str, required: bool) -> Gpu | None:
    gpu = spec.launch.gpu
    if spec.launch.gpus_per_node == 0:
        return None
    if gpu is None:
        if required:
            raise SpecError([Problem("launch.gpu", f"the {backend} backend needs the GPU type, "
                                     "e.g. `gpu: H100` or `gpu: A100:80GB`")], spec.source)
        return None
    name, _, memory = gpu.partition(":")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", name) or (
            memory and not re.match(r"^\d+(\.\d+)?(GB|TB)$", memory)):
        raise SpecError([Problem("launch.gpu", f"{gpu!r} is not a GPU type; write NAME or "
                                 "NAME:MEMORY, e.g. H100 or A100:80GB")], spec.source)
    return Gpu(name, memory or None)


def max_gpus_per_node(gpu_name: str | None) -> int:
    name = (gpu_name or "").upper()
    return 16 if name.startswith(SIXTEEN_GPU_TYPES) else DEFAULT_MAX


def per_node_problems(spec: Spec, backend: str) -> list[Problem]:
    """`launch.gpus_per_node` beyond what any node `backend` can get has."""
    wanted = spec.launch.gpus_per_node
    if wanted <= DEFAULT_MAX:
        return []
    try:
        gpu = parse_gpu(spec, backend, required=False)
    except SpecError as exc:  # an unreadable `launch.gpu` is its own problem
        return list(exc.problems)
    limit = max_gpus_per_node(gpu.name if gpu else None)
    if wanted <= limit:
        return []
    kind = f"{gpu.name} " if gpu else ""
    fix = ("use more `launch.nodes` instead (e.g. "
           f"`nodes: {spec.launch.nodes * -(-wanted // limit)}, gpus_per_node: {limit}`)")
    if not gpu:
        fix += "; for 16-GPU A100 or V100 nodes, name the type in `launch.gpu`"
    return located(spec, [Problem("launch.gpus_per_node", (
        f"{wanted} GPUs per node: no {kind}machine {backend} can get has more than {limit} "
        f"{kind}GPUs (an HGX board holds 8; a cloud's largest instance has 8, 16 only for "
        f"A100 40GB); {fix}"))])
