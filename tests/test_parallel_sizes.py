"""Axolotl's parallel sizes: `dp_shard_size` / `dp_replicate_size` lay out FSDP2's mesh (HSDP;
trained in tests/test_hsdp_training.py), checked against the launch block's GPU count; the
sizes of features ft does not have are accepted at 1 (nothing split) and refused above it
with what the feature is and what ft does instead."""

from __future__ import annotations

import os
import warnings

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import run_ft
from tests.test_axolotl_corpus import _tiny_copy
from tests.train_helpers import summary
from trainer.distributed.device_mesh import MeshError, check_dp_sizes
from trainer.distributed.world_ranks import WorldRanks
from trainer.torch_free.dp_mesh import DpMesh, MeshSizeError, resolve, shard_group_size
from trainer.torch_free.errors import SpecError

BASE = "base_model: org/model\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n" \
       "adapter: lora\nlora_target_linear: true\n"
FSDP = "fsdp_version: 2\nfsdp_config:\n  reshard_after_forward: true\n"


def _launch(nodes: int, gpus: int) -> str:
    return f"launch:\n  name: j\n  nodes: {nodes}\n  gpus_per_node: {gpus}\n  gpu: H100\n"


def _parse(text: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml")


def _problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        _parse(text)
    return [f"{p.path}: {p.message}" for p in info.value.problems]


@pytest.mark.parametrize(("shard", "replicate", "world", "layout"), [
    (None, None, 16, DpMesh(1, 16)),  # plain FSDP: one group of every GPU
    (1, None, 16, DpMesh(1, 16)),  # Axolotl: a shard size of 1 alone asks for nothing
    (8, None, 16, DpMesh(2, 8)),  # a node's 8 GPUs, replicated on both nodes
    (None, 2, 16, DpMesh(2, 8)),
    (8, 2, 16, DpMesh(2, 8)),
    (1, 16, 16, DpMesh(16, 1)),  # replication everywhere: DDP semantics
    (16, 1, 16, DpMesh(1, 16)),
])
def test_sizes_resolve_as_in_axolotl(shard, replicate, world, layout):
    assert resolve(shard, replicate, world) == layout


@pytest.mark.parametrize(("shard", "replicate", "message"), [
    (8, 4, "`dp_shard_size: 8` x `dp_replicate_size: 4` = 32, but the job has 16 GPUs"),
    (3, None, "`dp_shard_size: 3` does not divide the job's 16 GPUs"),
    (None, 5, "`dp_replicate_size: 5` does not divide the job's 16 GPUs"),
])
def test_sizes_that_do_not_fit_name_both_keys_and_the_numbers(shard, replicate, message):
    with pytest.raises(MeshSizeError, match=message.replace("*", r"\*")):
        resolve(shard, replicate, 16)


def test_the_memory_estimate_divides_by_the_shard_group():
    """trainer/models/activation_memory.py: under HSDP a GPU holds 1/dp_shard_size of the
    weights, not 1/world; sizes that do not fit count as unset (refused elsewhere)."""
    assert shard_group_size(8, None, 16) == 8
    assert shard_group_size(None, None, 16) == 16
    assert shard_group_size(3, None, 16) == 16


def test_validate_checks_the_sizes_against_nodes_times_gpus_per_node():
    t = _parse(BASE + FSDP + "dp_shard_size: 8\n" + _launch(2, 8)).training
    assert (t.dp_shard_size, t.dp_replicate_size) == (8, None)
    assert _problems(BASE + FSDP + "dp_shard_size: 8\ndp_replicate_size: 4\n" +
                     _launch(2, 8)) == [
        "dp_shard_size: `dp_shard_size: 8` x `dp_replicate_size: 4` = 32, but the job has 16 "
        "GPUs; their product must equal the GPU count (e.g. `dp_shard_size`: GPUs per node, "
        "`dp_replicate_size`: nodes) (launch: nodes x gpus_per_node = 16)"]
    # No launch block (a plain Axolotl config): the trainer checks them against torchrun's.
    _parse(BASE + FSDP + "dp_shard_size: 8\ndp_replicate_size: 4\n")


def test_sizes_need_fsdp_and_agree_with_its_strategy():
    assert _problems(BASE + "dp_shard_size: 8\n") == [
        "dp_shard_size: `dp_shard_size: 8` shards the weights with FSDP, which this spec does "
        "not use; add `fsdp_config:` (e.g. `fsdp_version: 2`) or remove it"]
    assert "DeepSpeed ZeRO partitions by its own config" in \
        _problems(BASE + "deepspeed: zero2\ndp_replicate_size: 2\n")[0]
    assert "while the NO_SHARD strategy replicates them" in _problems(
        BASE + FSDP + "  sharding_strategy: NO_SHARD\ndp_shard_size: 8\n")[0]
    # Without FSDP every GPU is a replica: the count may be said, and must be right.
    _parse(BASE + "dp_replicate_size: 16\ndp_shard_size: 1\n" + _launch(2, 8))
    assert "every one of the job's 16 GPUs holds a whole replica" in _problems(
        BASE + "dp_replicate_size: 2\n" + _launch(2, 8))[0]


def test_the_trainer_checks_the_sizes_against_the_ranks_torchrun_started():
    cfg = _parse(BASE + FSDP + "dp_shard_size: 8\ndp_replicate_size: 4\n").training
    with pytest.raises(MeshError, match=r"= 32, but the job has 16 GPUs.*torchrun started 16 "
                                        r"processes: 2 node\(s\) x 8"):
        check_dp_sizes(cfg, WorldRanks(rank=0, world_size=16, local_world_size=8))
    check_dp_sizes(cfg, WorldRanks(rank=0, world_size=32, local_world_size=8))


@pytest.mark.parametrize("key", ["tensor_parallel_size", "context_parallel_size",
                                 "sequence_parallel_degree", "expert_parallel_size"])
def test_a_parallel_size_of_one_asks_for_nothing(key):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        _parse(BASE + f"{key}: 1\n")
    assert not [w for w in caught if key in str(w.message)]
    (problem,) = _problems(BASE + f"{key}: 2\n")
    assert problem.startswith(f"{key}: ") and "is not supported; the nearest ft has is FSDP2 " \
        "(`fsdp_config`; `dp_shard_size` / `dp_replicate_size` for HSDP" in problem
    assert f"{key}: true" not in _problems(BASE + f"{key}: true\n")[0]  # not a size of 1


def test_each_refused_parallelism_says_what_it_is():
    for key, words in (("tensor_parallel_size", "each layer's weight matrices split"),
                       ("context_parallel_size", "one long sequence split across GPUs"),
                       ("expert_parallel_size", "some of a MoE layer's experts")):
        assert words in _problems(BASE + f"{key}: 4\n")[0]


def test_the_noop_sizes_corpus_config_trains(tmp_path, tiny_model_dir):
    """tests/fixtures/axolotl/corpus/noop-parallel-sizes.yml (every size at 1) on the tiny
    model: accepted without a word about them, and it trains."""
    spec = _tiny_copy("noop-parallel-sizes.yml", tmp_path, tiny_model_dir, "alpaca.jsonl")
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parallel_size" not in result.stderr and "parallel_degree" not in result.stderr
    assert summary(tmp_path / "out")["global_step"] == 3


@pytest.mark.parametrize(("nodes", "gpus", "gather", "gathers", "micro", "fsdp", "hsdp"), [
    # bf16 gathers for forward and backward, fp32 reduce-scatter: 2 x 15/16 x 2 + 15/16 x 4
    (2, 8, 2, 2, 1, 7.5, 4.0),
    # accumulation gathers on every micro-batch and reduces once: 4 x 2 x 31/32 x 2 + 31/32 x 4
    (4, 8, 2, 2, 4, 19.375, 6.0),
    (2, 8, 2, 1, 1, 5.625, 4.0),  # SHARD_GRAD_OP: no re-gather for backward
    (1, 8, 2, 2, 1, 0.0, 0.0),  # one node: nothing crosses
])
def test_internode_bytes_per_parameter(nodes, gpus, gather, gathers, micro, fsdp, hsdp):
    from orchestrator.spec.internode_traffic import Traffic, bytes_per_parameter

    assert bytes_per_parameter(nodes, gpus, gather_bytes=gather, gathers_per_micro_batch=gathers,
                               micro_batches=micro) == pytest.approx(Traffic(fsdp, hsdp))


def test_ft_validate_prints_the_traffic_of_a_multinode_full_finetune(tmp_path):
    """An unknown model (`org/model`): the table is in bytes per parameter, 2 nodes of 8
    GPUs in bf16 as bytes_per_parameter counts them (its own test above)."""
    full = BASE.replace("adapter: lora\nlora_target_linear: true\n", "") + FSDP + "bf16: true\n"
    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (tmp_path / "spec.yaml").write_text(full + _launch(2, 8))
    result = run_ft("validate", "spec.yaml", "--backend", "slurm", cwd=tmp_path,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    assert "  inter-node traffic per optimizer step, out of each node (NCCL ring estimate): " \
        "bytes per model parameter, the model's shape being unknown" in result.stdout
    rows = {line.split()[0]: line.split()[-4] for line in result.stdout.splitlines()
            if line.startswith("    FSDP over") or line.startswith("    HSDP")}
    assert rows == {"FSDP": "7.50", "HSDP,": "4.00"}
    single = tmp_path / "one-node.yaml"
    single.write_text(full + _launch(1, 8))
    result = run_ft("validate", str(single), "--backend", "slurm", cwd=tmp_path)
    assert "inter-node traffic" not in result.stdout
