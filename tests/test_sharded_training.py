"""FSDP2 and DeepSpeed ZeRO on two emulated nodes (a real gloo world of 2, CPU): sharding
must not change the training (same losses and gradient norms as one process), the saved
adapter or full model must be whole, and a sharded checkpoint must resume exactly."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.cli_runner import run_ft
from tests.support.sample_ledger import HOOK, shards_path
from tests.train_helpers import free_port, summary, write_tiny_spec

FSDP = {"fsdp": ["full_shard", "auto_wrap"],
        "fsdp_config": {"fsdp_version": 2, "fsdp_cpu_ram_efficient_loading": True,
                        "fsdp_state_dict_type": "FULL_STATE_DICT"}}
FULL_FINETUNE = {"adapter": None, "lora_target_linear": None, "learning_rate": 0.001}


def _launch(spec, cwd, **env):
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), cwd=cwd, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def _curve(output_dir, key: str) -> dict[int, float]:
    return {e["step"]: e[key] for e in summary(output_dir)["log_history"] if key in e}


@pytest.fixture(scope="module")
def fsdp_lora_run(tmp_path_factory, tiny_model_dir):
    """LoRA sharded over 2 nodes x 1 process, micro batch 2: a global batch of 4; with the
    pre-flight check first, as a cautious user would launch it."""
    tmp = tmp_path_factory.mktemp("fsdp-lora")
    spec = write_tiny_spec(tmp, tiny_model_dir, micro_batch_size=2,
                           launch={"nodes": 2, "preflight": True}, **FSDP)
    log = _launch(spec, tmp)
    return tmp, spec, log


@pytest.fixture(scope="module")
def one_process_run(tiny_lora_run):
    """The reference: the same global batch of 4 in one process (micro batch 4), nothing
    sharded: the session's tiny LoRA run."""
    return tiny_lora_run / "out"


@pytest.fixture(scope="module")
def one_process_full_run(tmp_path_factory, tiny_model_dir):
    """The full fine-tune's reference: global batch of 4 in one process."""
    tmp = tmp_path_factory.mktemp("one-process-full")
    spec = write_tiny_spec(tmp, tiny_model_dir, micro_batch_size=4, **FULL_FINETUNE)
    result = run_ft("train", str(spec), cwd=tmp)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return tmp / "out"


def _assert_same_training(output_dir, reference) -> None:
    for key in ("loss", "grad_norm", "eval_loss"):
        sharded, whole = _curve(output_dir, key), _curve(reference, key)
        assert sharded.keys() == whole.keys() and sharded
        assert sharded == pytest.approx(whole, rel=1e-4), key


def test_sharded_training_equals_one_process(fsdp_lora_run, one_process_run):
    tmp, _, log = fsdp_lora_run
    # The pre-flight's link check ran first, in the training ranks, and passed.
    assert log.index("ft pre-flight: ok   link       node 0 (") < \
        log.index("FSDP2 FULL_SHARD: 2 Llama")
    assert "FSDP2 FULL_SHARD: 2 LlamaDecoderLayer layers sharded over 2 ranks" in log
    assert summary(tmp / "out")["world_size"] == 2
    _assert_same_training(tmp / "out", one_process_run)


@pytest.mark.parametrize(("strategy", "mesh"), [("SHARD_GRAD_OP", "mesh 2"),
                                                ("HYBRID_SHARD", "mesh 2x1")])
def test_other_fsdp_strategies_equal_one_process(strategy, mesh, tmp_path, tiny_model_dir,
                                                 one_process_run):
    """HYBRID_SHARD on 2 nodes of 1 process: shard within the node (1 rank), replicate
    across the two: the 2-D mesh path, as on a real multi-node HSDP job."""
    fsdp = {**FSDP, "fsdp_config": {**FSDP["fsdp_config"], "sharding_strategy": strategy}}
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, launch={"nodes": 2},
                           **fsdp)
    log = _launch(spec, tmp_path)
    assert f"FSDP2 {strategy}: 2 LlamaDecoderLayer layers sharded over 2 ranks (cpu, {mesh})" \
        in log
    _assert_same_training(tmp_path / "out", one_process_run)


def test_replicated_frozen_base_trains_as_one_process_and_resumes(tmp_path, tiny_model_dir,
                                                                  one_process_run):
    """`replicate_frozen_params: true`: the frozen base stays whole on each rank, outside
    FSDP (no all-gathers of it), only the adapter is sharded. Rank 0 alone reads the
    weights (`cpu_ram_efficient_loading`), so the other rank receives the replicated ones by
    broadcast too; a restart resumes that layout from its sharded checkpoint."""
    fsdp = {**FSDP, "fsdp_config": {**FSDP["fsdp_config"], "replicate_frozen_params": True}}
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, launch={"nodes": 2},
                           **fsdp)
    log = _launch(spec, tmp_path)
    assert "layers sharded over 2 ranks (cpu, mesh 2), gather dtype as stored; frozen " \
        "weights replicated on every rank" in log
    _assert_same_training(tmp_path / "out", one_process_run)
    saved = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert tuple(saved["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].shape) \
        == (64, 8)
    first = _curve(tmp_path / "out", "loss")
    shutil.rmtree(tmp_path / "out" / "checkpoint-8")
    (tmp_path / "out" / "ft-complete.json").unlink()
    log = _launch(spec, tmp_path)
    assert "resuming from" in log and "checkpoint-4" in log
    assert log.count("[node0] {'loss'") == 4, "the resumed run started over"
    assert _curve(tmp_path / "out", "loss") == pytest.approx(first, rel=1e-4)


@pytest.mark.parametrize("zero", ["zero1", "zero2", "zero3"])
def test_deepspeed_zero_equals_one_process(zero, tmp_path, tiny_model_dir, one_process_run):
    """The shipped ZeRO configs (named, as `deepspeed: zero2`), DeepSpeed's CPU accelerator
    over gloo; ZeRO-3 also partitions the weights at load time."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, deepspeed=zero,
                           launch={"nodes": 2})
    log = _launch(spec, tmp_path)
    # No JIT build of DeepSpeed's CPU shared-memory op (minutes; a killed build hangs later runs).
    assert "deepspeed_shm_comm" not in log
    out = tmp_path / "out"
    assert summary(out)["world_size"] == 2
    _assert_same_training(out, one_process_run)
    saved = load_file(out / "adapter_model.safetensors")
    lora_b = saved["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]
    assert tuple(lora_b.shape) == (64, 8)  # hidden size x rank: whole, not a partition


def test_sharded_checkpoint_resumes_where_it_stopped(fsdp_lora_run):
    tmp, spec, _ = fsdp_lora_run
    first = _curve(tmp / "out", "loss")
    checkpoint = tmp / "out" / "checkpoint-4"
    # Resumable state is sharded: one model and one optimizer shard per rank (torch DCP).
    assert (checkpoint / "pytorch_model_fsdp_0").is_dir()
    assert (checkpoint / "optimizer_0").is_dir()
    assert len(list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))) == 2
    # The marker, written by rank 0, lists the files every rank wrote.
    marker = json.loads((checkpoint / "ft-complete.json").read_text())
    assert marker["world_size"] == 2
    assert {"optimizer_0/__1_0.distcp", "pytorch_model_fsdp_0/__1_0.distcp",
            "optimizer_0/.metadata", "rng_state_1.pth"} <= set(marker["files"])
    # Step 8's checkpoint loses rank 1's optimizer shard (a node's disk, a bad copy) and the
    # job stops before its final save: the restart must fall back to step 4, not crash.
    (tmp / "out" / "checkpoint-8" / "optimizer_0" / "__1_0.distcp").unlink()
    (tmp / "out" / "ft-complete.json").unlink()
    log = _launch(spec, tmp)
    assert "checkpoint-8 cannot be resumed from: optimizer_0/__1_0.distcp is missing" in log
    assert "resuming from" in log and "checkpoint-4" in log
    # The history carries steps 1-4 over from the checkpoint; this run logged 5-8 only.
    assert log.count("[node0] {'loss'") == 4, "the resumed run started over"
    resumed = _curve(tmp / "out", "loss")
    assert resumed == pytest.approx(first, rel=1e-4)


def test_sharded_qlora_saves_the_whole_adapter(tmp_path, tiny_model_dir):
    """Known failure elsewhere: a saved lora_B holding 1/world_size of its rows. Stitch the
    ranks' own final shards together and compare with what was saved."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, max_steps=4,
                           save_steps=4, load_in_4bit=True, adapter="qlora",
                           launch={"nodes": 2}, **FSDP)
    log = _launch(spec, tmp_path, FT_TRAINER_HOOKS=HOOK)
    assert "gather dtype torch.bfloat16" in log
    out = tmp_path / "out"
    saved = load_file(out / "adapter_model.safetensors")
    shards = [torch.load(shards_path(out, rank)) for rank in (0, 1)]
    assert saved and len(saved) == len(shards[0])
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    rank = 8
    for name, local0 in shards[0].items():
        stitched = torch.cat([local0, shards[1][name]])
        key = name.replace(".default", "")
        assert key in saved, f"{key} missing from the saved adapter"
        module = base.get_submodule(name.split(".lora_")[0].replace("base_model.model.", ""))
        expected = (module.out_features, rank) if ".lora_B." in name else \
            (rank, module.in_features)
        assert tuple(saved[key].shape) == expected, key
        assert torch.equal(saved[key], stitched.to(saved[key].dtype)), key
    lora_b = [v for k, v in saved.items() if ".lora_B." in k]
    assert any(v.abs().sum() > 0 for v in lora_b), "the adapter did not train"
    # It loads onto the plain base model, as `ft merge-lora` and `ft inference` do.
    from peft import PeftModel

    PeftModel.from_pretrained(base, out)
    assert (out / "checkpoint-4" / "adapter_model.safetensors").is_file()


def _assert_same_weights(output_dir, reference) -> None:
    from transformers import AutoModelForCausalLM

    sharded = AutoModelForCausalLM.from_pretrained(output_dir).state_dict()
    whole = AutoModelForCausalLM.from_pretrained(reference).state_dict()
    assert sharded.keys() == whole.keys()
    for name, tensor in whole.items():
        torch.testing.assert_close(sharded[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def test_sharded_full_finetune_saves_the_model_once_in_shards_and_resumes(
        tmp_path, tiny_model_dir, one_process_full_run):
    """No adapter: checkpoints hold only the sharded (DCP) state, no whole model; the final
    model is streamed into several safetensors shards (their size forced small) with
    transformers' index, loads with plain transformers and equals one process's training;
    a restart resumes from the sharded checkpoint alone."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, micro_batch_size=2, launch={"nodes": 2},
                           fsdp=["full_shard", "auto_wrap"], fsdp_config={"fsdp_version": 2},
                           **FULL_FINETUNE)
    small_shards = {"FT_EXPORT_MAX_SHARD_BYTES": "200000"}
    log = _launch(spec, tmp_path, **small_shards)
    out = tmp_path / "out"
    _assert_same_training(out, one_process_full_run)
    saved = re.search(r"saved the model: (\d+) tensors in (\d+) shard\(s\), [\d.]+ [kMG]B, "
                      r"float32, in [\d.]+ s; rank 0 host memory \(RSS\) peak \+", log)
    assert saved and int(saved[2]) >= 3, log[-3000:]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == int(saved[2])
    assert not (out / "model.safetensors").exists()
    _assert_same_weights(out, one_process_full_run)
    for step in (4, 8):
        checkpoint = out / f"checkpoint-{step}"
        assert len(list((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))) == 2
        assert (checkpoint / "optimizer_0").is_dir()
        assert not list(checkpoint.rglob("*.safetensors")), step
    # A job stopped after step 4's checkpoint: resume from the DCP shards and save again.
    shutil.rmtree(out / "checkpoint-8")
    (out / "ft-complete.json").unlink()
    log = _launch(spec, tmp_path, **small_shards)
    assert "resuming from" in log and "checkpoint-4" in log
    assert log.count("[node0] {'loss'") == 4, "the resumed run started over"
    _assert_same_weights(out, one_process_full_run)
    marker = json.loads((out / "ft-complete.json").read_text())
    assert {n for n in marker["files"] if "safetensors" in n} == \
        {"model.safetensors.index.json", *index["weight_map"].values()}
