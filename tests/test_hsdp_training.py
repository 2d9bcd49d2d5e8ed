"""HSDP for real: tests/fixtures/axolotl/corpus/hsdp-dp-sizes.yml (`dp_shard_size`) on two
emulated nodes of two ranks each (CPU, gloo; torchrun per node, as `ft node` starts it), a
2-D ("replicate", "shard") mesh: every weight is split over the two ranks of a node and the
same split is held by both nodes. Training must equal one process on the same global batch,
and the sharded checkpoint must resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli_runner import REPO, run_ft
from tests.support.mesh_record import HOOK, read_record
from tests.test_axolotl_corpus import _tiny_copy
from tests.train_helpers import free_port, summary, train_losses

NODES, PER_NODE = 2, 2


def _launch_two_nodes(spec: Path, cwd: Path) -> list[str]:
    """One torchrun per emulated node, two ranks each, meeting at one rendezvous."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FT_TRAINER_HOOKS": HOOK,
           "OMP_NUM_THREADS": "1"}
    port = str(free_port())
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(NODES), "--node-rank",
         str(node), "--nproc-per-node", str(PER_NODE), "--master-addr", "127.0.0.1",
         "--master-port", port, "-m", "orchestrator.cli", "train", str(spec)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in range(NODES)]
    logs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-4000:]
    return logs


def _specs(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    """The corpus config on the tiny model with 2 GPUs per emulated node, and its one-process
    reference (no FSDP, micro batch 4 = 4 ranks x 1: the same global batch)."""
    sharded = _tiny_copy("hsdp-dp-sizes.yml", tmp_path, model_dir, "alpaca.jsonl")
    spec = yaml.safe_load(sharded.read_text())
    spec.update(dp_shard_size=PER_NODE, sequence_len=256, save_steps=2)
    sharded.write_text(yaml.safe_dump(spec, sort_keys=False))
    for key in ("dp_shard_size", "fsdp_version", "fsdp_config"):
        spec.pop(key)
    spec.update(micro_batch_size=4 * spec["micro_batch_size"],
                output_dir=str(tmp_path / "one-process"))
    single = tmp_path / "one-process.yml"
    single.write_text(yaml.safe_dump(spec, sort_keys=False))
    return sharded, single


def _curve(output_dir: Path, key: str) -> dict[int, float]:
    return {e["step"]: e[key] for e in summary(output_dir)["log_history"] if key in e}


def test_hsdp_shards_in_a_node_replicates_across_nodes_and_resumes(tmp_path, tiny_model_dir):
    sharded, single = _specs(tmp_path, tiny_model_dir)
    reference = run_ft("train", str(single), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]
    logs = _launch_two_nodes(sharded, tmp_path)
    assert "`dp_shard_size: 2` on 4 ranks: HSDP: sharded over 2 GPUs, 2 replicas of that " \
        "group" in logs[0]
    out = tmp_path / "out"
    assert summary(out)["world_size"] == 4 and summary(out)["global_step"] == 3
    for key in ("loss", "grad_norm"):
        assert _curve(out, key) == pytest.approx(_curve(tmp_path / "one-process", key),
                                                 rel=1e-4), key

    records = [read_record(out, rank) for rank in range(NODES * PER_NODE)]
    name = "model.layers.0.mlp.down_proj.weight"
    for record in records:
        layout = record["params"][name]
        assert layout["mesh_shape"] == [NODES, PER_NODE]
        assert layout["dim_names"] == ["replicate", "shard"]
        assert layout["placements"] == ["Replicate()", "Shard(dim=0)"]
        assert layout["local_shape"][0] * PER_NODE == layout["full_shape"][0]
    # Global ranks 0,1 are node 0 and 2,3 node 1: a node's two ranks hold different halves,
    # the same half is held on both nodes.
    digest = [r["params"][name]["sha1"] for r in records]
    assert digest[0] != digest[1] and digest[0] == digest[2] and digest[1] == digest[3]

    first = train_losses(out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert (out / "checkpoint-2" / "ft-complete.json").is_file()
    shutil.rmtree(out / "checkpoint-3", ignore_errors=True)
    (out / "ft-complete.json").unlink()
    logs = _launch_two_nodes(sharded, tmp_path)
    assert "resuming from" in logs[0] and "checkpoint-2" in logs[0], logs[0][-3000:]
    assert logs[0].count("{'loss'") == 1, "the resumed run started over"
    assert train_losses(out) == pytest.approx(first, rel=1e-4)
