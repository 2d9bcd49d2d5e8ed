"""Mixture-of-experts models (trainer/models/moe_*.py) on tiny offline models of three
families: the corpus configs train 3 steps with LoRA on attention and experts, QLoRA with
4-bit experts, the router's load-balancing loss counts, one config trains on two emulated
nodes with FSDP2, and merge-lora / inference work on the result."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.cli_runner import run_ft
from tests.corpus_tiny import tiny_corpus_copy, tiny_dataset
from tests.train_helpers import free_port, summary


@pytest.fixture(scope="session")
def tiny_moe(tmp_path_factory):
    """family -> directory of a tiny model of it (built once per session)."""
    from trainer.models.tiny_moe import FAMILIES, build_tiny_moe

    root = tmp_path_factory.getbasetemp() / "tiny-moe"
    return {family: build_tiny_moe(root / family, family) for family in FAMILIES}


def _tiny_moe_spec(name: str, tmp_path: Path, model_dir: Path, data: str, **changes) -> Path:
    """The corpus config with only the model, data, output swapped (and `changes`)."""
    return tiny_corpus_copy(name, tmp_path, model_dir, drop=("chat_template",),
                            datasets=tiny_dataset(data), max_steps=3, sequence_len=256,
                            sample_packing=False, **changes)


def _train(spec: Path) -> dict:
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return summary(Path(yaml.safe_load(spec.read_text())["output_dir"]))


def _expert_adapter_tensors(out: Path) -> dict:
    saved = load_file(out / "adapter_model.safetensors")
    return {k: v for k, v in saved.items() if ".mlp.experts." in k}


def test_mixtral_lora_on_attention_and_experts_trains_and_merges(tmp_path, tiny_moe):
    spec = _tiny_moe_spec("moe-mixtral-lora-router-loss.yml", tmp_path, tiny_moe["mixtral"],
                          "alpaca.jsonl", gradient_checkpointing=False)
    facts = _train(spec)
    assert facts["global_step"] == 3
    out = tmp_path / "out"
    experts = _expert_adapter_tensors(out)
    # gate_up_proj nests inside down_proj as peft nests them on the plain model
    assert {k.split("mlp.experts.")[1] for k in experts} == {
        "base_layer.lora_A.weight", "base_layer.lora_B.weight", "lora_A.weight",
        "lora_B.weight"}
    assert any(v.abs().sum() > 0 for k, v in experts.items() if "lora_B" in k)
    config = json.loads((out / "adapter_config.json").read_text())
    assert sorted({p.rsplit(".", 1)[1] for p in config["target_parameters"]}) == \
        ["down_proj", "gate_up_proj"]
    merged = run_ft("merge-lora", str(spec))
    assert merged.returncode == 0, merged.stderr[-3000:]
    _merged_equals_adapter(out, tiny_moe["mixtral"])
    answer = run_ft("inference", str(spec), "--prompt", "Name a colour.",
                    "--max-new-tokens", "4")
    assert answer.returncode == 0, answer.stderr[-3000:]


def _merged_equals_adapter(out: Path, base_dir: Path, tolerance: float = 1e-4) -> None:
    """The merged model computes what base + adapter computes (the experts' deltas are in
    the merged 3-D weights); `tolerance` for a merge stored in bf16 (QLoRA's)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        plain = base(input_ids=ids).logits
        adapted = PeftModel.from_pretrained(base, out)(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32)(
            input_ids=ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-5), "the adapter changed nothing"
    torch.testing.assert_close(merged, adapted, atol=tolerance, rtol=tolerance)


def test_qwen3_moe_qlora_with_4bit_experts_trains(tmp_path, tiny_moe):
    spec = _tiny_moe_spec("moe-qwen3-qlora-experts.yml", tmp_path, tiny_moe["qwen3_moe"],
                          "chat.jsonl", experts_implementation="eager")
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "quantize_moe_experts: 4 expert weights stored 4-bit (nf4), 4 of them while " \
        "loading" in result.stderr
    assert "experts implementation: eager" in result.stderr
    out = tmp_path / "out"
    experts = _expert_adapter_tensors(out)
    assert len(experts) == 8  # 2 layers x 2 parameters x (A, B)
    assert all(v.abs().sum() > 0 for k, v in experts.items() if "lora_B" in k), \
        "an expert adapter got no gradient"
    # The adapter is the one peft builds on the unquantized base (names and shapes), so
    # `ft merge-lora` merges it there.
    assert _plain_adapter_shapes(tiny_moe["qwen3_moe"], out) == {
        k: tuple(v.shape) for k, v in load_file(out / "adapter_model.safetensors").items()}
    merged = run_ft("merge-lora", str(spec))
    assert merged.returncode == 0, merged.stderr[-3000:]
    _merged_equals_adapter(out, tiny_moe["qwen3_moe"], tolerance=2e-2)


def _plain_adapter_shapes(base_dir: Path, out: Path) -> dict:
    """{tensor name: shape} of the adapter peft builds from `out`'s adapter_config on the
    plain (unquantized) base, as a saved adapter names them."""
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    config = LoraConfig.from_pretrained(out)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
    return {k: tuple(v.shape) for k, v in get_peft_model_state_dict(model).items()}


def test_glm4_moe_qlora_with_4bit_experts_trains_on_two_emulated_nodes(tmp_path, tiny_moe):
    spec = _tiny_moe_spec("moe-glm45-qlora-fsdp2.yml", tmp_path, tiny_moe["glm4_moe"],
                          "alpaca.jsonl", micro_batch_size=2, gradient_accumulation_steps=1,
                          launch={"name": "moe", "nodes": 2, "gpus_per_node": 0})
    # Submitted from tmp_path, as from a Slurm submit directory: the output under it is
    # storage both nodes share, which the pre-flight requires of a multi-node job.
    result = run_ft("launch", str(spec), "--backend", "local", "--nodes", "2",
                    "--master-port", str(free_port()), env={**os.environ}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    assert "FSDP2 FULL_SHARD: 2 Glm4MoeDecoderLayer layers sharded over 2 ranks" in \
        result.stdout + result.stderr
    out = tmp_path / "out"
    assert summary(out)["global_step"] == 3
    # Sharding changes nothing: the same global batch of 4 in one process, unsharded.
    alone = tmp_path / "alone"
    alone.mkdir()
    one = _tiny_moe_spec("moe-glm45-qlora-fsdp2.yml", alone, tiny_moe["glm4_moe"],
                         "alpaca.jsonl", micro_batch_size=4, gradient_accumulation_steps=1)
    text = yaml.safe_load(one.read_text())
    for key in ("fsdp_version", "fsdp_config"):
        text.pop(key)
    one.write_text(yaml.safe_dump(text, sort_keys=False))
    reference = _train(one)
    # Gradient norms within 1%: a sharded 4-bit model gathers its adapters in bf16
    # (trainer/distributed/fsdp.py), one process keeps them fp32.
    for key, tolerance in (("loss", 1e-4), ("grad_norm", 1e-2)):
        sharded = [e[key] for e in summary(out)["log_history"] if key in e]
        whole = [e[key] for e in reference["log_history"] if key in e]
        assert len(sharded) == 3 and sharded == pytest.approx(whole, rel=tolerance), key
    experts = _expert_adapter_tensors(out)
    # whole tensors, not one rank's shard: lora_A of gate_up_proj is (r * experts, hidden)
    assert experts["base_model.model.model.layers.1.mlp.experts.base_layer.lora_A.weight"
                   ].shape == (16 * 4, 64)


def test_a_target_module_peft_moves_onto_the_experts_is_named(tiny_moe, caplog):
    """peft maps `shared_experts.gate_proj` on GLM-4-MoE to the routed experts' fused
    weight; ft says so instead of training something else silently."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import lora_config
    from trainer.models.moe_load import report_redirected_targets

    cfg = make_cfg(tiny_moe["glm4_moe"], [{"path": "x.jsonl", "type": "alpaca"}],
                   adapter="lora", lora_target_modules=[
                       "q_proj", "shared_experts.gate_proj", "shared_experts.up_proj"])
    model = AutoModelForCausalLM.from_pretrained(tiny_moe["glm4_moe"])
    peft_model = get_peft_model(model, lora_config(cfg, model))
    assert report_redirected_targets(cfg, peft_model) == [
        "shared_experts.gate_proj", "shared_experts.up_proj"]
    assert "peft puts these on the routed experts' fused weights" in caplog.text


def test_router_load_balancing_loss_is_part_of_the_training_loss(tmp_path):
    """A config with `output_router_logits` (Axolotl sets it under `model_config`) adds
    `router_aux_loss_coef` x the load-balancing loss to the loss ft trains on."""
    import torch

    from tests.fixtures_tiny import make_cfg
    from trainer.models.load import choose_precision, load_model, load_tokenizer
    from trainer.models.tiny_moe import build_tiny_moe

    model_dir = build_tiny_moe(tmp_path / "mixtral", "mixtral", output_router_logits=True,
                               router_aux_loss_coef=0.5)
    cfg = make_cfg(model_dir, [{"path": "x.jsonl", "type": "alpaca"}], adapter="lora",
                   lora_target_modules=["q_proj"], lora_target_parameters=[
                       "mlp.experts.gate_up_proj"])
    tokenizer = load_tokenizer(cfg)
    model, _ = load_model(cfg, tokenizer, choose_precision(cfg))
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        with_aux = model(input_ids=ids, labels=ids)
        without = model(input_ids=ids, labels=ids, output_router_logits=False)
    assert with_aux.aux_loss > 0
    routers = [p for name, p in model.named_parameters() if name.endswith("mlp.gate.weight")]
    assert routers and not any(p.requires_grad for p in routers), "a router would train"
    assert with_aux.loss - without.loss == pytest.approx(0.5 * with_aux.aux_loss.item(),
                                                         rel=1e-4)


def test_cut_cross_entropy_refuses_to_drop_the_router_loss(tmp_path):
    from transformers import AutoModelForCausalLM

    from trainer.kernels.cut_cross_entropy import patch_model
    from trainer.models.tiny_moe import build_tiny_moe
    from trainer.torch_free.errors import UserError

    model_dir = build_tiny_moe(tmp_path / "mixtral", "mixtral", output_router_logits=True)
    with pytest.raises(UserError, match="router load-balancing loss"):
        patch_model(AutoModelForCausalLM.from_pretrained(model_dir))


def test_the_gpu_moe_bench_runs_its_tiny_path(tmp_path, tiny_moe):
    """bench/moe_bench.py is the GPU proof (30B-A3B shapes); its `--tiny` path runs the same
    code here, so the script cannot rot between GPU sessions."""
    import subprocess
    import sys

    from tests.cli_runner import REPO

    result = subprocess.run(
        [sys.executable, str(REPO / "bench/moe_bench.py"), "--tiny", "--steps", "3",
         "--warm", "1", "--seq", "128", "--work", str(tmp_path),
         "--model", str(tiny_moe["qwen3_moe"])],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["bench"] == "moe-qlora" and record["timed_steps"] == "2-3"
    assert record["tokens_per_s"] > 0 and record["experts_implementation"] == "grouped_mm"
    assert record["loss_first"] > 0 and record["loss_last"] > 0
    assert record["packed_expert_gib"] >= 0


def test_experts_packed_while_loading_equal_those_packed_after(tiny_moe):
    """Packing each expert weight as transformers places it (so the bf16 experts never sit
    in memory all at once) gives the same model as packing after loading."""
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.models.moe_quantize import packing_experts_while_loading, quantize_experts

    with packing_experts_while_loading(True, "nf4", True):
        early = AutoModelForCausalLM.from_pretrained(tiny_moe["qwen3_moe"])
    assert quantize_experts(early) == 4  # all four already packed, none left to do
    late = AutoModelForCausalLM.from_pretrained(tiny_moe["qwen3_moe"])
    assert quantize_experts(late) == 4
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(early(input_ids=ids).logits, late(input_ids=ids).logits)
    import transformers.core_model_loading as loading

    assert loading.set_param_for_module.__name__ == "set_param_for_module"  # restored


def test_moe_keys_on_a_dense_model_are_refused_by_name(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tests.fixtures_tiny import make_cfg
    from trainer.models.moe_load import prepare_experts
    from trainer.torch_free.errors import UserError

    dense = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    data = [{"path": "x.jsonl", "type": "alpaca"}]
    with pytest.raises(UserError, match="`quantize_moe_experts: true` .* LlamaForCausalLM has "
                       "none"):
        prepare_experts(make_cfg(tiny_model_dir, data, quantize_moe_experts=True), dense)
    with pytest.raises(UserError, match="`experts_implementation: eager` needs a mixture"):
        prepare_experts(make_cfg(tiny_model_dir, data, experts_implementation="eager"), dense)


def test_lora_target_parameters_that_match_nothing_list_the_experts(tiny_moe):
    from transformers import AutoModelForCausalLM

    from trainer.models.moe_experts import target_parameters
    from trainer.torch_free.errors import UserError

    model = AutoModelForCausalLM.from_pretrained(tiny_moe["mixtral"])
    assert target_parameters(model, ["experts.down_proj"]) == [
        "model.layers.0.mlp.experts.down_proj", "model.layers.1.mlp.experts.down_proj"]
    with pytest.raises(UserError, match=r"\['mlp.experts.w1'\] match no expert parameter .* "
                       r"\['mlp.experts.down_proj', 'mlp.experts.gate_up_proj'\]"):
        target_parameters(model, ["mlp.experts.w1"])


def test_8bit_experts_train_their_lora_as_the_4bit_ones_do(tiny_moe):
    """`quantize_moe_experts` with `load_in_8bit`: the experts int8 with a scale per row,
    LoRA on them still gets its gradient (two parameters on one module: both wrappers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.models.moe_experts import target_parameters
    from trainer.models.moe_quantize import finish_after_adapter, quantize_experts

    plain = AutoModelForCausalLM.from_pretrained(tiny_moe["qwen3_moe"])
    model = AutoModelForCausalLM.from_pretrained(tiny_moe["qwen3_moe"])
    assert quantize_experts(model, bits=8) == 4
    packed = model.model.layers[0].mlp.experts.parametrizations.gate_up_proj.original
    assert packed.dtype == torch.int8
    torch.testing.assert_close(model.model.layers[0].mlp.experts.gate_up_proj,
                               plain.model.layers[0].mlp.experts.gate_up_proj,
                               atol=2e-3, rtol=0.05)
    config = LoraConfig(r=4, target_modules=[], init_lora_weights=False,
                        target_parameters=target_parameters(model, ["mlp.experts.gate_up_proj",
                                                                    "mlp.experts.down_proj"]))
    model = get_peft_model(model, config)
    finish_after_adapter(model, torch.float32)
    ids = torch.arange(3, 40).unsqueeze(0)
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 8 and all(g is not None and g.abs().sum() > 0 for g in grads.values())
