"""trainer/distributed/sharded_export.py on a real gloo world of 2 processes (CPU): the
dtype rule, tied weights written once, several shards plus transformers' index, a later
single-shard save replacing them, and the whole-model fallback for a model whose save
converts weights.

The end-to-end run (training, checkpoints, resume) is in tests/test_sharded_training.py; on
a CPU the training dtype is fp32, so the bf16 cast is shown here by giving the sharding
plan a bf16 compute dtype, as a GPU run's plan has.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors import safe_open

from tests.train_helpers import free_port
from trainer.distributed.sharded_export import (
    INDEX_NAME,
    MAX_SHARD_ENV,
    WEIGHTS_NAME,
    max_shard_bytes,
    saved_dtype,
)
from trainer.torch_free.errors import UserError

SMALL = 10_000  # bytes per shard: the tiny models below need several
TINY = {"vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2}


@pytest.mark.parametrize(("stored", "is_param", "compute", "written"), [
    (torch.float32, True, torch.bfloat16, torch.bfloat16),  # fp32 master -> training dtype
    (torch.float32, True, None, torch.float32),  # no compute dtype: as stored
    (torch.float32, False, torch.bfloat16, torch.float32),  # a buffer: as it is
    (torch.int64, False, torch.bfloat16, torch.int64),
    (torch.bfloat16, True, torch.float16, torch.float16),
])
def test_saved_dtype_rule(stored, is_param, compute, written):
    assert saved_dtype(stored, is_param, compute) == written


def test_shards_are_5_gb_unless_the_environment_says_otherwise():
    assert max_shard_bytes({}) == 5 * 10**9  # transformers' "5GB"
    assert max_shard_bytes({MAX_SHARD_ENV: "200000"}) == 200_000
    with pytest.raises(UserError, match=f"{MAX_SHARD_ENV}='5GB': give the shard size as a "
                       "positive whole number of bytes"):
        max_shard_bytes({MAX_SHARD_ENV: "5GB"})


def _tied_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=True))
    return model.to(torch.bfloat16)  # as loaded for a bf16 run


def _mixtral():
    """A model whose save converts weights (its experts are fused in memory, written back
    one file key per expert)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    return MixtralForCausalLM(MixtralConfig(**TINY, num_local_experts=2)).to(torch.bfloat16)


def _rank_main(rank: int, port: int, out: str) -> None:
    """One rank: shard each model as ft does for a bf16 run, then export it."""
    import torch.distributed as dist

    from trainer.distributed.fsdp import ShardingPlan, shard_model
    from trainer.distributed.sharded_export import export_full_model
    from trainer.distributed.world_ranks import WorldRanks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    world = WorldRanks(rank=rank, world_size=2, local_world_size=2)
    plan = ShardingPlan(layer_classes=(), reshard_after_forward=True, offload_params=False,
                        cpu_ram_efficient_loading=False, param_dtype=torch.bfloat16)
    try:
        for name, build in (("llama", _tied_llama), ("mixtral", _mixtral)):
            model = shard_model(build(), plan, torch.device("cpu"), world)
            assert model.model.embed_tokens.weight.dtype == torch.float32  # fp32 masters
            export_full_model(model, Path(out) / name, plan.param_dtype,
                              is_main=rank == 0, shard_bytes=SMALL)
            if name == "llama":  # in shards, then again into the same directory as one file
                for limit in (SMALL, None):
                    export_full_model(model, Path(out) / "llama-one", plan.param_dtype,
                                      is_main=rank == 0, shard_bytes=limit)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    mp.spawn(_rank_main, args=(free_port(), str(out)), nprocs=2, join=True)
    return out


def _saved(directory) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(directory.glob("*.safetensors")):
        with safe_open(str(path), "pt") as handle:
            tensors.update({k: handle.get_tensor(k) for k in handle.keys()})  # noqa: SIM118
    return tensors


def _assert_loads_as(directory, reference) -> None:
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(directory)
    assert loaded.dtype == torch.bfloat16  # from config.json's dtype
    expected = reference.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_sharded_export_writes_transformers_shards_in_the_training_dtype(exported):
    out = exported / "llama"
    index = json.loads((out / INDEX_NAME).read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert sorted(p.name for p in out.glob("*.safetensors")) == files
    saved = _saved(out)
    assert set(saved) == set(index["weight_map"])
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in saved.values())
    # Tied: written once, under the name transformers keeps; from_pretrained re-ties.
    assert "model.embed_tokens.weight" in saved and "lm_head.weight" not in saved
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert (out / "generation_config.json").is_file()
    _assert_loads_as(out, _tied_llama())


def test_a_later_single_shard_save_leaves_no_stale_shards(exported):
    out = exported / "llama-one"
    assert sorted(p.name for p in out.iterdir() if "safetensors" in p.name) == [WEIGHTS_NAME]
    _assert_loads_as(out, _tied_llama())


def test_a_model_whose_save_converts_weights_falls_back_to_save_pretrained(exported):
    """The fused experts are written back per expert, as transformers writes them, and
    still in the training dtype."""
    out = exported / "mixtral"
    saved = _saved(out)
    assert any(".experts.0." in name for name in saved), sorted(saved)[:8]
    assert {t.dtype for t in saved.values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    _assert_loads_as(out, _mixtral())
