"""The same software on every node: ft's own code, torch, CUDA, NCCL, the driver, Python,
transformers, peft and the spec. Each node's local rank 0 takes the fingerprint; rank 0 names
each node whose value of a field differs from the majority's (on a tie, node 0's), with both
values. A node with another image or a hand-patched copy of ft would otherwise train with
different numerics, or hang in a collective whose layout its peers do not share.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
from collections import Counter
from pathlib import Path

import torch

from trainer.preflight.findings import Finding
from trainer.preflight.placement import gathered, here
from trainer.torch_free.preflight_settings import SPEC_SHA256_ENV

FT_PACKAGES = ("trainer", "orchestrator")
# Shown in this order; "ft" is the hash of ft's own sources as this node imports them.
FIELDS = ("ft", "torch", "cuda", "nccl", "driver", "python", "transformers", "peft", "spec")


def check(context) -> list[Finding]:
    world = context.world
    mine = fingerprint(context.cfg) if world.local_rank == 0 else None
    everyone = gathered((here(world), mine), world)
    if not world.is_main:
        return []
    return judge({place.node_rank: (place.host, prints) for place, prints in everyone
                  if prints is not None})


def judge(nodes: dict[int, tuple[str, dict[str, str]]]) -> list[Finding]:
    """{node rank: (host, fingerprint)} -> one finding per node."""
    reference = {field: _majority([prints[field] for _, (_, prints) in sorted(nodes.items())])
                 for field in FIELDS}
    findings = []
    for node, (host, prints) in sorted(nodes.items()):
        differs = []
        for field in FIELDS:
            if prints[field] != reference[field]:
                others = [n for n, (_, p) in sorted(nodes.items()) if p[field] == reference[field]]
                differs.append(f"{field} {prints[field]} here, {reference[field]} on node(s) "
                               f"{', '.join(map(str, others))}")
        detail = "differs: " + "; ".join(differs) if differs else \
            ", ".join(f"{field} {prints[field]}" for field in FIELDS)
        if not differs and len(nodes) > 1:
            detail = f"same as the other {len(nodes) - 1} node(s): {detail}"
        findings.append(Finding("software", node, host, not differs, detail, dict(prints)))
    return findings


def _majority(values: list[str]) -> str:
    """The most common value; on a tie the first (node 0's): the node that speaks for the job."""
    counts = Counter(values)
    best = max(counts.values())
    return next(value for value in values if counts[value] == best)


def fingerprint(cfg) -> dict[str, str]:
    cuda = torch.version.cuda
    return {"ft": ft_code_hash(), "torch": torch.__version__, "cuda": cuda or "none",
            "nccl": _nccl() if cuda and torch.cuda.is_available() else "none",
            "driver": _driver(), "python": platform.python_version(),
            "transformers": _version("transformers"), "peft": _version("peft"),
            "spec": _spec_hash(cfg)}


def ft_code_hash() -> str:
    """sha256 over ft's .py sources where this process imports them from (path inside the
    package and bytes): another wheel, or a modified copy on PYTHONPATH, differs."""
    digest = hashlib.sha256()
    for package in FT_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{package}/{path.relative_to(root)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _spec_hash(cfg) -> str:
    """The spec file's sha256 as `ft node` read it; without ft node, the training keys."""
    given = os.environ.get(SPEC_SHA256_ENV)
    if given:
        return given[:12]
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _nccl() -> str:
    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def _driver() -> str:
    """The NVIDIA kernel driver's version, or `none` on a machine without one."""
    try:
        line = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
        words = line.split()
        return next(w for w in words if w[:1].isdigit() and "." in w)
    except (OSError, IndexError, StopIteration):
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
        return out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else "none"
    except (OSError, subprocess.TimeoutExpired):
        return "none"
