"""trainer/distributed/fsdp.py's decisions, without a process group: what is sharded, in
which dtype."""

from __future__ import annotations

import pytest
import torch

from trainer.distributed.fsdp import ShardingError, decoder_layers, plan_for
from trainer.models.load import Precision, compute_dtype
from trainer.torch_free.training import TrainingConfig

BASE = {"base_model": "m", "datasets": [{"path": "d.jsonl", "type": "alpaca"}],
        "adapter": "lora", "lora_target_linear": True, "fsdp": ["full_shard"]}


def _cfg(**extra) -> TrainingConfig:
    return TrainingConfig.model_validate({**BASE, **extra})


def test_no_fsdp_no_plan():
    assert plan_for(TrainingConfig.model_validate({**BASE, "fsdp": None}), torch.float32) \
        is None


def test_bf16_training_gathers_in_bf16_and_fp32_cpu_training_as_stored():
    assert plan_for(_cfg(), torch.bfloat16).param_dtype == torch.bfloat16
    assert plan_for(_cfg(), torch.float32).param_dtype is None


def test_qlora_gathers_in_bf16_and_loads_on_every_rank():
    cfg = _cfg(adapter="qlora", load_in_4bit=True,
               fsdp_config={"cpu_ram_efficient_loading": True})
    fp32_cpu = Precision(torch.float32, bf16=False, fp16=False, tf32=None)
    plan = plan_for(cfg, compute_dtype(cfg, fp32_cpu))
    assert plan.param_dtype == torch.bfloat16
    assert plan.cpu_ram_efficient_loading is False  # each rank quantizes its own copy


def test_axolotl_keys_reach_the_plan():
    plan = plan_for(_cfg(fsdp_config={"fsdp_transformer_layer_cls_to_wrap": "LlamaDecoderLayer",
                                      "fsdp_offload_params": True,
                                      "fsdp_sharding_strategy": "HYBRID_SHARD",
                                      "fsdp_cpu_ram_efficient_loading": True}),
                    torch.bfloat16)
    assert plan.layer_classes == ("LlamaDecoderLayer",)
    assert plan.offload_params and plan.cpu_ram_efficient_loading
    assert plan.strategy == "HYBRID_SHARD"


def test_replicating_the_frozen_base_is_settled_by_the_estimate_only_under_auto():
    from trainer.distributed.fsdp import settle_replication

    auto = plan_for(_cfg(), torch.bfloat16)
    assert auto.replicate_frozen is None  # an adapter's base: decided once it is loaded
    assert settle_replication(auto, True).replicate_frozen is True
    assert settle_replication(auto, None).replicate_frozen is False  # no estimate: shard
    explicit = plan_for(_cfg(fsdp_config={"replicate_frozen_params": True}), torch.bfloat16)
    assert settle_replication(explicit, False).replicate_frozen is True
    # Nothing frozen (a full fine-tune) or weights offloaded to the CPU: always sharded.
    assert plan_for(_cfg(adapter=None), torch.bfloat16).replicate_frozen is False
    assert plan_for(_cfg(fsdp_config={"offload_params": True}), torch.bfloat16) \
        .replicate_frozen is False


def test_offloading_is_read_from_either_spelling_and_only_under_fsdp():
    """What decides that the process group also needs gloo for CPU-held gradients
    (trainer/distributed/process_group.py)."""
    from trainer.distributed.fsdp import offloads_params

    assert offloads_params(_cfg(fsdp_config={"fsdp_offload_params": True}))
    assert offloads_params(_cfg(fsdp=["full_shard", "offload"]))
    assert not offloads_params(_cfg())
    assert not offloads_params(_cfg(fsdp=None))


def test_a_layer_class_the_model_lacks_is_a_clear_error(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert len(decoder_layers(model, ())) == 2  # from the model's own _no_split_modules
    with pytest.raises(ShardingError, match=r"names \['MistralDecoderLayer'\].*"
                       r"its layer classes: \['LlamaDecoderLayer'\]"):
        decoder_layers(model, ("MistralDecoderLayer",))


def test_axolotl_fsdp_list_words_choose_strategy_and_offload():
    plan = plan_for(_cfg(fsdp=["shard_grad_op", "auto_wrap", "offload"]), torch.bfloat16)
    assert plan.strategy == "SHARD_GRAD_OP" and plan.offload_params
    explicit = _cfg(fsdp="hybrid_shard auto_wrap",
                    fsdp_config={"sharding_strategy": "FULL_SHARD"})
    assert plan_for(explicit, torch.bfloat16).strategy == "FULL_SHARD"
    assert plan_for(_cfg(fsdp="hybrid_shard auto_wrap"), torch.bfloat16).strategy == \
        "HYBRID_SHARD"


def test_training_arguments_take_their_fsdp_settings_from_the_plan(tmp_path):
    """One owner: what accelerate is told is what the plan decided, including the words of
    Axolotl's `fsdp:` list (`offload`, `shard_grad_op`) that `fsdp_config` does not repeat."""
    from trainer.distributed.world_ranks import WorldRanks
    from trainer.loop.hf_trainer import build_training_args

    cfg = _cfg(fsdp=["shard_grad_op", "auto_wrap", "offload"], output_dir=str(tmp_path),
               fsdp_config={"activation_checkpointing": True})
    plan = plan_for(cfg, torch.float32)
    fp32 = Precision(torch.float32, bf16=False, fp16=False, tf32=None)
    args = build_training_args(cfg, fp32, train_rows=8, world=WorldRanks(), has_eval=False,
                               plan=plan)
    assert args.fsdp_config["cpu_offload"] is plan.offload_params is True
    assert args.fsdp_config["reshard_after_forward"] is plan.reshard_layers is False
    recompute = getattr(args, "activation_checkpointing", None) or args.gradient_checkpointing
    assert recompute is True
    plain = _cfg(fsdp=None, output_dir=str(tmp_path))
    assert not build_training_args(plain, fp32, train_rows=8, world=WorldRanks(), has_eval=False,
                                   plan=None).fsdp
