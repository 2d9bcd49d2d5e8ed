"""On CUDA GPUs (the device machine; skipped elsewhere): the paths the CPU tests cannot take.
NCCL, bitsandbytes' CUDA kernels, FSDP2 + QLoRA with bf16 storage, DeepSpeed's CUDA
accelerator. `bash bench/gpu_tests.sh` runs them there.

With 2+ GPUs, the issue's proof in miniature: two emulated nodes of one GPU each and one
node of two GPUs must train identically (FSDP2 + QLoRA over NCCL).
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.cli_runner import REPO, run_ft
from tests.train_helpers import free_port, summary, write_tiny_spec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA GPU")]
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
FSDP_QLORA = {"load_in_4bit": True, "adapter": "qlora", "bf16": True,
              "fsdp": ["full_shard", "auto_wrap"],
              "fsdp_config": {"fsdp_version": 2, "fsdp_state_dict_type": "FULL_STATE_DICT"}}



def _ok(result) -> str:
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _torchrun(spec, cwd, nproc: int):
    """`ft train` under torchrun on this node: world = nproc GPUs."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
                           str(nproc), "--master-port", str(free_port()), "-m",
                           "orchestrator.cli", "train", str(spec)], cwd=cwd,
                          capture_output=True, text=True, env=env)


def _losses(output_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in summary(output_dir)["log_history"] if "loss" in e}


def test_fsdp2_qlora_trains_and_saves_a_whole_adapter(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2,
                           launch={"nodes": 2, "gpus_per_node": 1}, **FSDP_QLORA)
    log = _ok(_torchrun(spec, tmp_path, nproc=1))
    assert "gather dtype torch.bfloat16" in log and "(cuda, mesh 1)" in log
    out = tmp_path / "out"
    facts = summary(out)["model"]
    assert facts["loaded_in_4bit"] is True
    losses = list(_losses(out).values())
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]
    saved = load_file(out / "adapter_model.safetensors")
    assert tuple(saved["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].shape) \
        == (64, 8)


@pytest.mark.parametrize("fsdp_config", [
    {"fsdp_offload_params": True},
    {"fsdp_sharding_strategy": "HYBRID_SHARD", "fsdp_cpu_ram_efficient_loading": True},
], ids=["qlora-cpu-offload", "lora-hybrid-rank0-broadcast"])
def test_fsdp2_variants_on_gpu(fsdp_config, tmp_path, tiny_model_dir):
    quantized = "fsdp_offload_params" in fsdp_config
    spec = write_tiny_spec(
        tmp_path, tiny_model_dir, micro_batch_size=2, launch={"nodes": 2, "gpus_per_node": 1},
        **{**FSDP_QLORA, **({} if quantized else {"load_in_4bit": False, "adapter": "lora"}),
           "fsdp_config": {**FSDP_QLORA["fsdp_config"], **fsdp_config}})
    log = _ok(_torchrun(spec, tmp_path, nproc=1))
    assert ("params offloaded to CPU" in log) == quantized
    losses = list(_losses(tmp_path / "out").values())
    assert losses and losses[-1] < losses[0]


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("fsdp_config", [{}, {"fsdp_offload_params": True}],
                         ids=["bf16", "bf16-cpu-offload"])
def test_fsdp2_full_finetune_saves_bf16_a_tensor_at_a_time(fsdp_config, tmp_path,
                                                           tiny_model_dir):
    """No adapter, 2 GPUs: fp32 master weights train, the final model is written in bf16
    (the compute dtype), gathered one tensor at a time (with offloading, from shards in
    CPU memory), and the checkpoints hold no whole model."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, bf16=True,
                           adapter=None, lora_target_linear=None, learning_rate=0.001,
                           launch={"nodes": 1, "gpus_per_node": 2},
                           fsdp=["full_shard", "auto_wrap"],
                           fsdp_config={"fsdp_version": 2, **fsdp_config})
    log = _ok(_torchrun(spec, tmp_path, nproc=2))
    assert "gather dtype torch.bfloat16" in log and "(cuda, mesh 2)" in log
    line = re.search(r"saved the model: \d+ tensors in 1 shard\(s\), .*, bfloat16, in .* s; "
                     r"rank 0 host memory \(RSS\) peak \+.* during the save", log)
    assert line, log[-3000:]
    print(line[0])  # save time and host memory, for the results record
    out = tmp_path / "out"
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert set(dtypes.values()) == {"BF16"}, dtypes
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16
    for checkpoint in out.glob("checkpoint-*"):
        assert (checkpoint / "pytorch_model_fsdp_0").is_dir()
        assert not list(checkpoint.rglob("*.safetensors")), checkpoint
    losses = list(_losses(out).values())
    assert losses and losses[-1] < losses[0]


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_zero_on_gpu(zero, tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, bf16=True,
                           deepspeed=zero, launch={"nodes": 2, "gpus_per_node": 1})
    _ok(_torchrun(spec, tmp_path, nproc=1))
    losses = list(_losses(tmp_path / "out").values())
    assert losses and losses[-1] < losses[0]


def test_doctor_on_this_machines_gpus(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, launch={"gpus_per_node": GPUS})
    log = _ok(run_ft("doctor", str(spec), "--nodes", "1", "--gpus-per-node", str(GPUS),
                     "--master-port", str(free_port()), cwd=tmp_path))
    assert f"ft pre-flight (nodes): 1 node(s), {GPUS} rank(s)" in log
    assert f"{GPUS} GPU(s), bf16 matmul " in log  # every GPU timed, each with its free memory


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
def test_two_nodes_of_one_gpu_train_like_one_node_of_two(tmp_path, tiny_model_dir):
    """FSDP2 + QLoRA over NCCL: `--nodes 2 --gpus-per-node 1` against 1 node x 2 GPUs."""
    runs = {}
    for name, nodes, gpus in (("two-nodes", 2, 1), ("one-node", 1, 2)):
        work = tmp_path / name
        work.mkdir()
        # `replicate_frozen_params: true` keeps FSDP2 (its `auto` would choose DDP for a
        # model this small: test_lora_on_two_gpus_... covers that).
        qlora = {**FSDP_QLORA, "fsdp_config": {**FSDP_QLORA["fsdp_config"],
                                               "replicate_frozen_params": True}}
        spec = write_tiny_spec(work, tiny_model_dir, micro_batch_size=2,
                               launch={"nodes": nodes, "gpus_per_node": gpus,
                                       "preflight": True}, **qlora)
        log = _ok(run_ft("launch", str(spec), "--backend", "local", "--master-port",
                         str(free_port()), cwd=work))
        assert "ft pre-flight: ok   link       node 0 (" in log
        # NCCL's own log, read by the pre-flight, against the profile (auto: tcp here).
        assert "ft pre-flight: ok   transport  node 0 (" in log
        runs[name] = _losses(work / "out")
    assert runs["two-nodes"] == pytest.approx(runs["one-node"], rel=2e-2)


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
def test_lora_on_two_gpus_replicates_its_frozen_base_and_trains_as_sharded(tmp_path,
                                                                          tiny_model_dir):
    """`replicate_frozen_params: true` keeps the base whole on each GPU under FSDP2; `auto`
    goes further where the whole adapter model fits a GPU, as this small one does: DDP
    (orchestrator/spec/layout_choice.py, judged by this GPU's memory). The losses of both
    match the run that shards the base (`false`) over NCCL."""
    runs = {}
    for name, replicate in (("replicated", True), ("auto", "auto"), ("sharded", False)):
        work = tmp_path / name
        work.mkdir()
        spec = write_tiny_spec(work, tiny_model_dir, micro_batch_size=2, bf16=True,
                               launch={"nodes": 1, "gpus_per_node": 2},
                               fsdp=["full_shard", "auto_wrap"],
                               fsdp_config={"fsdp_version": 2,
                                            "replicate_frozen_params": replicate})
        log = _ok(_torchrun(spec, work, nproc=2))
        assert ("frozen weights replicated on every rank" in log) == (replicate is True)
        assert ("layout: DDP, chosen by `replicate_frozen_params: auto`" in log) == \
            (replicate == "auto")
        assert ("FSDP2 FULL_SHARD" in log) == (replicate != "auto")
        runs[name] = _losses(work / "out")
    assert runs["replicated"] == pytest.approx(runs["sharded"], rel=2e-2)
    assert runs["auto"] == pytest.approx(runs["sharded"], rel=2e-2)


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize(("nodes", "gpus", "words"), [
    (1, 2, "ft: node 0: NCCL transport within the node: "),
    (2, 1, "ft: node 0: NCCL transport between nodes: "),
], ids=["one-node-of-two", "two-nodes-of-one"])
def test_each_node_says_which_transport_nccl_chose(nodes, gpus, words, tmp_path,
                                                   tiny_model_dir):
    """ft node sends NCCL's INFO log to a file per process; after the first all-reduce each
    node prints what NCCL chose, read from that log (P2P/CUMEM or SHM within a node; between
    emulated nodes the same, or NET/Socket when they are isolated as real nodes)."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir,
                           launch={"nodes": nodes, "gpus_per_node": gpus})
    log = _ok(run_ft("doctor", str(spec), "--nodes", str(nodes), "--gpus-per-node", str(gpus),
                     "--master-port", str(free_port()), cwd=tmp_path))
    lines = [line for line in log.splitlines() if words in line]
    assert lines and re.search(r"(P2P|SHM|NET)/", lines[0]), log[-3000:]
    assert "(NCCL's log of this rank: " in log and "WARNING: NCCL fell back" not in log
    assert "NCCL INFO" not in log  # the INFO log went to its files, not the console
