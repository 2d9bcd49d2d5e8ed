"""The automatic layouts trained for real on emulated nodes (CPU, gloo): an FSDP adapter spec
whose whole model fits each GPU trains with DDP, and a multi-node FSDP spec with several
ranks per node trains as HSDP (shard in the node, replicate across nodes).

The seam is not a mock: the GPU memory the decision judges by is `launch.gpu`'s figure, the
same input `ft validate` reads (on a GPU machine without `launch.gpu`, the GPU's own). A
CPU job without `launch.gpu` has nothing to judge by and keeps FSDP2 as written, which is why
every other sharded test on CPU still shards."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.cli_runner import run_ft
from tests.support.mesh_record import HOOK as MESH_HOOK
from tests.support.mesh_record import read_record
from tests.support.sample_ledger import HOOK as LEDGER_HOOK
from tests.test_hsdp_training import NODES, PER_NODE, _launch_two_nodes
from tests.test_sharded_training import FSDP
from tests.train_helpers import free_port, summary, train_losses, write_tiny_spec

HOOKS = f"{LEDGER_HOOK},{MESH_HOOK}"


def _launch(spec, cwd) -> str:
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=cwd,
                    env={**os.environ, "FT_TRAINER_HOOKS": HOOKS})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_fsdp_adapter_that_fits_trains_with_ddp_and_resumes(tmp_path, tiny_model_dir,
                                                            quantized):
    """2 emulated nodes x 1 rank; `launch.gpu: H100` says how much memory a GPU has. The
    spec asks for FSDP2 with `replicate_frozen_params: auto` (the default): the tiny
    adapter model fits an H100 whole, so DDP trains it. QLoRA too: each rank quantizes its
    own copy (bitsandbytes on the rank's own device, as ft's QLoRA without FSDP always did)."""
    extra = {"load_in_4bit": True, "adapter": "qlora"} if quantized else {}
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, max_steps=3,
                           save_steps=2, eval_steps=3, launch={"nodes": 2, "gpu": "H100"},
                           **FSDP, **extra)
    log = _launch(spec, tmp_path)
    chosen = "layout: DDP, chosen by `replicate_frozen_params: auto`: the whole adapter " \
        "model fits each GPU"
    assert chosen in log  # said by `ft launch` before anything starts, and by `ft train`
    assert log.count(chosen) >= 2, log[-3000:]
    assert "`fsdp_config.replicate_frozen_params: true` keeps FSDP2" in log
    assert "(`cpu_ram_efficient_loading` is FSDP's: under DDP every rank reads" in log
    assert "FSDP2 FULL_SHARD" not in log  # fsdp.py's wrapping never ran
    out = tmp_path / "out"
    for rank in (0, 1):
        record = read_record(out, rank)
        assert {key: record[key] for key in ("wrapped", "fsdp_modules")} == \
            {"wrapped": "DistributedDataParallel", "fsdp_modules": 0}
    digests = {(out / f"ft-final-rank{rank}.sha1").read_text() for rank in (0, 1)}
    assert len(digests) == 1, "the DDP replicas' adapters differ after 3 steps"
    assert summary(out)["world_size"] == 2 and summary(out)["global_step"] == 3
    assert summary(out)["model"]["loaded_in_4bit"] is quantized
    if quantized:
        return
    # A requeued job: same spec, same GPU figure, same ranks -> the same layout, resumed
    # from the DDP checkpoint (plain adapter files, not FSDP's sharded state).
    first = train_losses(out)
    assert not (out / "checkpoint-2" / "pytorch_model_fsdp_0").exists()
    shutil.rmtree(out / "checkpoint-3")
    (out / "ft-complete.json").unlink()
    log = _launch(spec, tmp_path)
    assert chosen in log and "resuming from" in log and "checkpoint-2" in log
    assert train_losses(out) == pytest.approx(first, rel=1e-4)
    merged = run_ft("merge-lora", str(spec), "--cpu", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert (out / "merged" / "config.json").is_file()
    # The spec edited to keep FSDP2: the DDP checkpoint cannot resume there, and says so
    # before any model loads.
    edited = yaml.safe_load(spec.read_text())
    edited["fsdp_config"]["replicate_frozen_params"] = True
    spec.write_text(yaml.safe_dump(edited, sort_keys=False))
    (out / "ft-complete.json").unlink()
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=tmp_path)
    assert result.returncode != 0
    assert "checkpoint-3 was written by DDP and this run trains with FSDP2" in result.stdout


def _hsdp_spec(tmp_path, model_dir, name: str, launch: dict) -> Path:
    """The tiny full fine-tune under FSDP2, no mesh sizes: the layout is ft's to choose."""
    spec = write_tiny_spec(tmp_path, model_dir, micro_batch_size=1, max_steps=3, save_steps=3,
                           eval_steps=3, adapter=None, lora_target_linear=None,
                           learning_rate=0.001, fsdp_version=2,
                           fsdp_config={"reshard_after_forward": True},
                           output_dir=str(tmp_path / name), launch=launch)
    return spec.rename(tmp_path / f"{name}.yaml")


def test_multinode_fsdp_becomes_hsdp_when_a_node_share_fits(tmp_path, tiny_model_dir):
    """2 emulated nodes x 2 ranks. Without `launch.gpu` (CPU, nothing to judge by) ft keeps
    FSDP2 over all 4 ranks and says why; with `launch.gpu: H100` one node's share fits, so
    the mesh is (replicate 2, shard 2). Both train the same global batch: the losses agree
    to 1e-4 relative (fp32 on CPU; the layouts sum the same gradients in a different order,
    the tolerance every sharding-equivalence test here uses)."""
    launch = {"nodes": NODES, "gpus_per_node": 0}
    full = _hsdp_spec(tmp_path, tiny_model_dir, "full", launch)
    auto = _hsdp_spec(tmp_path, tiny_model_dir, "auto", {**launch, "gpu": "H100"})
    full_logs = _launch_two_nodes(full, tmp_path)
    assert "layout: FSDP2 sharded over all 4 GPUs: not judged whether one node's share " \
        "fits: no GPU memory figure" in full_logs[0]
    auto_logs = _launch_two_nodes(auto, tmp_path)
    assert "layout: HSDP, automatic on 2 nodes: each weight is sharded over the 2 GPUs of " \
        "a node" in auto_logs[0]
    assert "`dp_shard_size: 2` on 4 ranks: HSDP: sharded over 2 GPUs, 2 replicas" \
        in auto_logs[0]
    name = "model.layers.0.mlp.down_proj.weight"
    for rank in range(NODES * PER_NODE):
        assert read_record(tmp_path / "full", rank)["params"][name]["mesh_shape"] == [4]
        layout = read_record(tmp_path / "auto", rank)["params"][name]
        assert layout["mesh_shape"] == [NODES, PER_NODE]
        assert layout["dim_names"] == ["replicate", "shard"]
    assert train_losses(tmp_path / "auto") == pytest.approx(train_losses(tmp_path / "full"),
                                                            rel=1e-4)
    assert yaml.safe_load(auto.read_text()).get("dp_shard_size") is None  # the spec as written
