"""The memory estimate (trainer/torch_free/memory_estimate.py) against peaks measured on the
GPU machines, the trainer and `ft validate` counting the same bytes, and `ft validate` /
`ft launch` printing it and refusing a spec that cannot fit (orchestrator/spec/memory_fit.py)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from orchestrator.spec.memory_fit import gpu_memory
from orchestrator.spec.model_shapes import KNOWN, find_shape, known_name
from tests.cli_runner import REPO, run_ft
from trainer.torch_free.memory_estimate import (
    GIB,
    PROJECTIONS,
    Estimate,
    Setup,
    count_params,
    peak,
    shape_from_config,
    static_from_shape,
)
from trainer.torch_free.training import TrainingConfig

LLAMA_8B = KNOWN["llama-3.1-8b"]
LORA = Setup(adapter=True, lora_r=16, lora_targets=PROJECTIONS, optimizer="adamw_torch")
QLORA = Setup(adapter=True, lora_r=16, lora_targets=PROJECTIONS, bits=4,
              optimizer="adamw_torch")
TOLERANCE = 0.07

# Peak torch.cuda.max_memory_allocated of Llama-3.1-8B's shape on one GPU (seq 2048, r16
# all-linear LoRA, adamw_torch), from bench/results (ft) and ../shared/bench/ANCHORS.md
# (baseline: plain transformers + peft). kernels: (fused loss, fused norm, lean LoRA).
# The estimate's error on each, as this table computes it: +4.5, +2.6, -0.3, +5.6, -3.4,
# -3.0, -3.5, +2.0, -0.1, -0.3, +4.7, +2.5 %.
MEASURED = [
    # what, setup, tokens, kernels, layers recomputed, measured GiB, source
    ("ft LoRA, Liger, lean LoRA", LORA, 8192, (True, True, True), 0, 50.09,
     "2026-11-26-h100-call6 lora-fixed-8b ft"),
    ("ft LoRA, Liger, lean LoRA, all recomputed", LORA, 8192, (True, True, True), 32, 19.0,
     "2026-11-26-h100-call5 lora-fixed-8b ft+ckpt"),
    ("ft LoRA, Liger, peft's forward", LORA, 8192, (True, True, False), 0, 58.56,
     "2026-11-26-h100-call3 lora-fixed-8b ft+nolorak"),
    ("ft QLoRA, Liger, lean LoRA", QLORA, 8192, (True, True, True), 0, 40.45,
     "2026-11-26-2xh100-call13 qlora-fixed-8b ft"),
    ("ft LoRA packed mbs 8, auto: 9 recomputed", LORA, 16384, (True, True, True), 9, 72.46,
     "2026-11-26-h100-call6 lora-realistic-8b ft"),
    ("ft LoRA packed mbs 8, auto: 13 recomputed", LORA, 16384, (True, True, True), 13, 63.43,
     "2026-11-26-h100-call4 lora-realistic-8b ft"),
    ("ft QLoRA packed mbs 8, auto: 14 recomputed", QLORA, 16384, (True, True, True), 14,
     51.53, "2026-11-26-2xh100-call13 qlora-realistic-8b ft"),
    ("baseline LoRA, all recomputed", LORA, 8192, (False, False, False), 32, 29.36,
     "ANCHORS.md; 2026-11-26-h100-call1 lora-fixed-8b baseline"),
    ("baseline LoRA + Liger, all recomputed", LORA, 8192, (True, True, False), 32, 19.7,
     "ANCHORS.md, transformers' own flags"),
    ("baseline LoRA + Liger, none recomputed", LORA, 8192, (True, True, False), 0, 58.56,
     "ANCHORS.md; 2026-11-26-h100-call1 baseline+liger+nockpt"),
    ("baseline LoRA, none recomputed (H200)", LORA, 8192, (False, False, False), 0, 80.4,
     "ANCHORS.md, transformers' own flags"),
    ("baseline LoRA padded mbs 8, all recomputed", LORA, 16384, (False, False, False), 32,
     43.26, "2026-11-26-h100-call4 lora-realistic-8b baseline"),
]


@pytest.mark.parametrize("what,setup,tokens,kernels,recomputed,measured,source", MEASURED,
                         ids=[row[0] for row in MEASURED])
def test_the_estimate_is_within_7_percent_of_each_measured_peak(
        what, setup, tokens, kernels, recomputed, measured, source):
    static = static_from_shape(LLAMA_8B, setup).total
    est = Estimate(static, tokens, setup.bits == 4, *kernels)
    estimated = peak(LLAMA_8B, est, recomputed).total / GIB
    error = (estimated - measured) / measured
    assert abs(error) <= TOLERANCE, f"{what} ({source}): {estimated:.2f} GiB estimated, " \
        f"{measured} measured ({error:+.1%})"


def test_static_bytes_from_the_shape_match_what_the_trainer_counted_on_the_gpu():
    """The trainer logs the static bytes of the loaded model (bench/results 2026-11-26:
    LoRA 15.6 GiB, QLoRA 5.8 GiB once the embeddings stayed bf16); Llama-3.1-8B has 8.03B
    parameters."""
    assert count_params(LLAMA_8B).total == pytest.approx(8.03e9, rel=0.001)
    assert static_from_shape(LLAMA_8B, LORA).total / GIB == pytest.approx(15.6, abs=0.05)
    assert static_from_shape(LLAMA_8B, QLORA).total / GIB == pytest.approx(5.8, rel=0.03)


def _tiny_llama(adapter: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         vocab_size=300, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if adapter:
        model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    return model


@pytest.mark.parametrize("adapter", [True, False], ids=["lora", "full"])
def test_the_trainer_and_validate_count_the_same_bytes_for_a_real_model(adapter):
    """One arithmetic: the trainer's count over the loaded model's parameters equals the
    count `ft validate` makes from the shape alone (a real transformers + peft model)."""
    from trainer.models.activation_memory import shape_of, static_bytes

    model = _tiny_llama(adapter)
    shape = shape_of(model.config)
    setup = Setup(adapter=adapter, lora_r=8, lora_targets=PROJECTIONS,
                  optimizer="adamw_torch_fused")
    assert static_bytes(model, 1, optimizer="adamw_torch_fused") == \
        static_from_shape(shape, setup).total


def test_optimizer_state_and_sharding_change_the_static_bytes_as_they_should():
    full = Setup(optimizer="adamw_torch_fused")
    n = count_params(LLAMA_8B).total
    # bf16 weights, bf16 gradients, two bf16 AdamW states: 8 bytes a parameter
    assert static_from_shape(LLAMA_8B, full).total == pytest.approx(8 * n, rel=1e-6)
    assert static_from_shape(LLAMA_8B, Setup(optimizer="adamw_torch_8bit")).total == \
        pytest.approx(6 * n, rel=1e-6)
    # FSDP trains fp32 copies (16 bytes a parameter), split over the shard group, plus two
    # layers gathered at once
    sharded = static_from_shape(LLAMA_8B, Setup(fsdp=True, shards=8))
    assert sharded.weights + sharded.training == pytest.approx(16 * n / 8, rel=1e-6)
    assert 0 < sharded.gathered < GIB
    zero = [static_from_shape(LLAMA_8B, Setup(zero_stage=s, shards=8)).total
            for s in (1, 2, 3)]
    assert zero[0] > zero[1] > zero[2] == pytest.approx(16 * n / 8, rel=1e-6)


def test_a_mixture_of_experts_counts_every_expert_and_activates_the_routed_ones():
    """Qwen3-30B-A3B's config.json: 30.5B parameters, ~3.3B active."""
    shape = shape_from_config({
        "num_hidden_layers": 48, "hidden_size": 2048, "intermediate_size": 6144,
        "vocab_size": 151936, "num_attention_heads": 32, "num_key_value_heads": 4,
        "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
        "moe_intermediate_size": 768})
    assert shape == KNOWN["qwen3-30b-a3b"]
    assert count_params(shape).total == pytest.approx(30.5e9, rel=0.01)
    assert shape.mlp_width == 8 * 768
    quantized = static_from_shape(shape, Setup(adapter=True, bits=4, quantize_experts=True))
    assert quantized.total < static_from_shape(shape, Setup(adapter=True, bits=4)).total / 2


def test_gpu_memory_comes_from_launch_gpu():
    assert gpu_memory("H100").total_bytes / GIB == pytest.approx(79.2, abs=0.1)
    assert gpu_memory("H200").total_bytes / GIB == pytest.approx(139.6, abs=0.3)
    assert gpu_memory("A100:40GB").total_bytes / GIB == pytest.approx(39.6, abs=0.1)
    two_sizes = gpu_memory("A100")
    assert two_sizes.name == "A100:80GB" and "A100:40GB" in two_sizes.note
    assert gpu_memory("H100:80GB").total_bytes == gpu_memory("H100").total_bytes
    assert gpu_memory("XPU9000") is None and gpu_memory(None) is None


def _training(**keys) -> TrainingConfig:
    return TrainingConfig(datasets=[{"path": "d.jsonl", "type": "alpaca"}], **keys)


def test_the_shape_comes_from_a_local_config_then_the_table_else_the_reason(
        tiny_model_dir, monkeypatch, tmp_path):
    local = find_shape(_training(base_model=str(tiny_model_dir)))
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert local.shape.layers == config["num_hidden_layers"]
    assert local.source == f"{tiny_model_dir}/config.json"
    assert known_name("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert find_shape(_training(base_model="meta-llama/Llama-3.1-8B-Instruct")).shape == \
        LLAMA_8B
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    unknown = find_shape(_training(base_model="some-org/some-model"))
    assert unknown.shape is None and "HF_HUB_OFFLINE" in unknown.source


def _write_spec(tmp_path, text: str):
    (tmp_path / "d.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    path = tmp_path / "spec.yaml"
    path.write_text("datasets:\n  - path: d.jsonl\n    type: alpaca\n" + text)
    return path


TOO_BIG = """base_model: meta-llama/Llama-3.1-8B
sequence_len: 8192
micro_batch_size: 8
gradient_checkpointing: false
launch:
  gpu: A100:40GB
"""


def test_validate_refuses_a_spec_that_cannot_fit_and_names_what_to_change(tmp_path):
    spec = _write_spec(tmp_path, TOO_BIG)
    result = run_ft("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"{spec}: does not fit: memory per GPU (estimate): " in result.stderr
    assert "GiB usable on A100:40GB" in result.stderr
    for key in ("`gradient_checkpointing: true`", "`micro_batch_size: 1`"):
        assert key in result.stderr


def test_launch_refuses_it_before_rendering_or_submitting_anything(tmp_path):
    spec = _write_spec(tmp_path, TOO_BIG)
    result = run_ft("launch", str(spec), "--backend", "slurm", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "does not fit" in result.stderr
    assert "# ----" not in result.stdout  # no rendered file, no submit command


def test_validate_prints_the_estimate_against_the_gpu(tmp_path):
    spec = _write_spec(tmp_path, """base_model: meta-llama/Llama-3.1-8B-Instruct
adapter: lora
lora_r: 16
lora_target_linear: true
micro_batch_size: 4
launch:
  gpu: H100
""")
    result = run_ft("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    head = next(line for line in lines if "memory per GPU" in line)
    assert head.startswith("  memory per GPU (estimate): ")
    assert head.endswith(" GiB of 70.3 GiB usable on H100:80GB: fits")
    at = lines.index(head)
    assert lines[at + 1].startswith("    weights 15.1 + gradients and optimizer 0.5 + "
                                    "activations ")
    assert "layers recomputed: auto" in lines[at + 1]
    assert lines[at + 2] == ("    shape: meta-llama/Llama-3.1-8B-Instruct (ft's table of "
                             "known shapes)")
    assert lines[at + 3].startswith("    with Liger's kernels (ft uses them where "
                                    "liger-kernel is in the image): ")


def test_an_unknown_model_skips_the_estimate_and_says_why(tmp_path):
    spec = _write_spec(tmp_path, "base_model: some-org/some-model\nlaunch:\n  gpu: H100\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_ft("validate", str(spec), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert ("  memory estimate skipped: some-org/some-model is not in ft's table of known "
            "shapes and HF_HUB_OFFLINE is set") in result.stdout


def test_the_estimate_costs_validate_no_noticeable_time(tiny_model_dir, tmp_path):
    from orchestrator.spec.load import load_spec
    from orchestrator.spec.memory_fit import memory_report

    spec = load_spec(_write_spec(tmp_path, f"base_model: {tiny_model_dir}\nlaunch:\n"
                                 "  gpu: H100\n"))
    start = time.perf_counter()
    for _ in range(10):
        memory_report(spec)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_the_gpu_check_script_runs_its_tiny_path(tmp_path):
    """bench/memory_estimate_check.py is the GPU proof (estimate vs measured peak at the 8B
    shape); its `--tiny` path runs the same `ft train` process and hook on a CPU, so the
    script cannot rot between GPU sessions (one case: ~15 s of tiny training)."""
    import subprocess

    result = subprocess.run(
        [sys.executable, str(REPO / "bench/memory_estimate_check.py"), "--tiny", "--cases",
         "lora", "--steps", "2", "--work", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["bench"] == "memory-estimate" and record["case"] == "lora"
    assert record["rc"] == 0 and record["layers"] == 2 and record["device"] == "cpu"
    assert record["estimate_bytes"] > 0 and record["max_allocated"] is None


def _doc_blocks() -> list[list[str]]:
    text = (REPO / "docs/memory.md").read_text()
    return [block.strip("\n").splitlines() for block in text.split("```")[1::2]]


DOC_SPECS = [  # docs/memory.md's two samples, in order
    ("""base_model: meta-llama/Llama-3.1-8B-Instruct
sequence_len: 4096
micro_batch_size: 2
gradient_checkpointing: false
launch:
  gpu: H100:80GB
""", 2),
    ("""base_model: meta-llama/Llama-3.1-8B-Instruct
adapter: lora
lora_r: 16
lora_target_linear: true
micro_batch_size: 4
launch:
  gpus_per_node: 8
  gpu: H100:80GB
""", 0),
]


@pytest.mark.parametrize("index", [0, 1], ids=["refused", "fits"])
def test_docs_memory_md_shows_what_validate_prints(tmp_path, index):
    text, code = DOC_SPECS[index]
    _write_spec(tmp_path, text)
    result = run_ft("validate", "spec.yaml", cwd=tmp_path)
    assert result.returncode == code, result.stderr
    printed = [line for line in (result.stderr + result.stdout).splitlines()
               if "--backend" not in line]
    assert printed == _doc_blocks()[index]


def test_the_shape_comes_from_the_hugging_face_cache_before_the_table(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--meta-llama--Llama-3.1-8B" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({
        "num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128,
        "vocab_size": 300, "num_attention_heads": 4}))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    found = find_shape(_training(base_model="meta-llama/Llama-3.1-8B"))
    assert found.shape.layers == 3 and "Hugging Face cache" in found.source


def test_sgd_and_adafactor_keep_no_full_size_state():
    n = count_params(LLAMA_8B).total
    for optimizer in ("sgd", "adafactor"):
        assert static_from_shape(LLAMA_8B, Setup(optimizer=optimizer)).total == \
            pytest.approx(4 * n, rel=1e-6)  # bf16 weights and gradients only


def test_a_70b_lora_on_one_node_is_refused_with_sharding_and_qlora_as_the_ways_out(tmp_path):
    """Llama-3.3-70B's bf16 weights (131 GiB) fit no single GPU: FSDP over the node's eight,
    or 4-bit weights, are the answers; without a GPU named it only prints."""
    from orchestrator.spec.load import load_spec
    from orchestrator.spec.memory_fit import memory_check

    text = "base_model: meta-llama/Llama-3.3-70B-Instruct\nadapter: lora\n" \
        "lora_target_linear: true\nlaunch:\n  gpus_per_node: 8\n"
    lines, too_big = memory_check(load_spec(_write_spec(tmp_path, text + "  gpu: H100\n")))
    assert lines == [] and "does not fit" in too_big
    assert "shard over the 8 GPUs with FSDP (`fsdp: [full_shard, auto_wrap]`)" in too_big
    assert "`adapter: qlora` with `load_in_4bit: true`" in too_big
    lines, too_big = memory_check(load_spec(_write_spec(tmp_path, text)))
    assert too_big is None
    assert lines[0].endswith("GiB; name `launch.gpu` (e.g. H100:80GB) to check it fits")
    assert "32 of 32" not in lines[1] and "80 of 80 layers recomputed: auto, the least it " \
        "needs: the GPU decides" in lines[1]
