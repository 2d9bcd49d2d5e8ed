"""The automatic data-parallel layout (orchestrator/spec/layout_choice.py, decided from the
memory estimate by orchestrator/spec/layout_fit.py) and the inter-node bytes per step of
each layout (orchestrator/spec/internode_table.py), checked against hand calculations.
Training under the chosen layouts: tests/test_auto_layout_training.py."""

from __future__ import annotations

import warnings

import pytest

from orchestrator.spec.internode_table import moved, out_of_each_node, table
from orchestrator.spec.layout_choice import DDP, FSDP, HSDP, Fits, apply_layout, choose_layout
from orchestrator.spec.layout_fit import layout_for, spec_layouts
from orchestrator.spec.layout_report import layout_report
from orchestrator.spec.load import SpecWarning, parse_spec
from orchestrator.spec.model_shapes import KNOWN, find_shape
from tests.cli_runner import run_ft

LORA = "adapter: lora\nlora_r: 16\nlora_target_linear: true\n"
FSDP_SPEC = "fsdp_version: 2\nfsdp_config:\n  reshard_after_forward: true\n"


def _spec(model: str, training: str, nodes: int = 1, gpus: int = 2, gpu: str = "H100",
          extra: str = "", fsdp_lines: str = "", micro_batch: int = 1):
    """`fsdp_lines`: more `fsdp_config` keys (indented); `extra`: more top-level keys."""
    text = (f"base_model: {model}\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"
            f"sequence_len: 2048\nmicro_batch_size: {micro_batch}\nbf16: true\n{training}"
            f"{FSDP_SPEC}{fsdp_lines}{extra}launch:\n  name: j\n  nodes: {nodes}\n"
            f"  gpus_per_node: {gpus}\n  gpu: {gpu}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, "spec.yaml")


def _layout(spec):
    return spec_layouts(spec, find_shape(spec.training))[0]


def test_an_adapter_that_fits_each_gpu_whole_trains_with_ddp():
    spec = _spec("meta-llama/Llama-3.1-8B", LORA)
    layout = _layout(spec)
    assert layout.kind == DDP
    assert "the whole adapter model fits each GPU" in layout.line
    assert "`fsdp_config.replicate_frozen_params: true` keeps FSDP2" in layout.line
    trained = apply_layout(spec.training, layout)
    assert not trained.uses_fsdp and trained.adapter == "lora"


def test_an_adapter_too_big_for_one_gpu_keeps_fsdp2_and_says_why():
    layout = _layout(_spec("meta-llama/Llama-3.1-70B", LORA))
    assert layout.kind == FSDP
    assert "the whole adapter model needs more memory or more recomputed layers on each " \
        "GPU than FSDP2" in layout.line


def test_liger_kernels_count_where_the_image_has_them():
    """8B LoRA, 4 x 2048 tokens a micro-batch on 2 H100s: with the plain loss the whole model
    needs more recomputed layers than FSDP2; with Liger's fused loss (no logits) it fits.
    `ft train` counts Liger where liger-kernel is installed on a GPU (`liger=True`);
    `ft validate` cannot see the image and prints both answers."""
    spec = _spec("meta-llama/Llama-3.1-8B", LORA, micro_batch=4)
    assert _layout(spec).kind == FSDP
    args = (spec.training, KNOWN["llama-3.1-8b"], 1, 2, 80 * 2**30, "H100")
    assert layout_for(*args, liger=True).kind == DDP
    _, lines = layout_report(spec)
    assert lines[0].startswith("layout: FSDP2, no DDP: the whole adapter model needs more")
    assert lines[1].startswith("where liger-kernel is in the image (ft uses it on a GPU), its "
                               "kernels change the choice: layout: DDP, chosen by")
    named = _spec("meta-llama/Llama-3.1-8B", LORA, micro_batch=4,
                  extra="liger_kernel: true\n")
    assert _layout(named).kind == DDP and len(layout_report(named)[1]) == 1
    off = _spec("meta-llama/Llama-3.1-8B", LORA, micro_batch=4, extra="liger_kernel: false\n")
    assert layout_for(off.training, *args[1:], liger=True).kind == FSDP


@pytest.mark.parametrize("written", [
    "  replicate_frozen_params: true\n", "  replicate_frozen_params: false\n",
    "  sharding_strategy: SHARD_GRAD_OP\n", "  offload_params: true\n",
])
def test_a_layout_written_in_the_spec_is_kept(written):
    spec = _spec("meta-llama/Llama-3.1-8B", LORA, fsdp_lines=written)
    layout = _layout(spec)
    assert layout is None or layout.kind != DDP
    if "replicate" not in written:
        assert layout is None


def test_mesh_sizes_written_in_the_spec_win():
    spec = _spec("meta-llama/Llama-3.1-8B", "", nodes=2, gpus=8, extra="dp_shard_size: 16\n")
    assert _layout(spec) is None


def test_several_nodes_shard_in_the_node_when_its_share_fits():
    spec = _spec("meta-llama/Llama-3.1-8B", "", nodes=2, gpus=8)
    layout = _layout(spec)
    assert (layout.kind, layout.dp_shard_size) == (HSDP, 8)
    assert apply_layout(spec.training, layout).dp_shard_size == 8
    assert "`dp_shard_size: 8` sets HSDP, `dp_shard_size: 16` full sharding" in layout.line


def test_several_nodes_keep_full_sharding_when_a_node_share_does_not_fit():
    # 70B full fine-tune: bf16 weights + fp32 master, gradients and Adam, over 8 GPUs:
    # about 18 bytes x 70.6e9 / 8 = 147 GiB a GPU, more than an H100 holds.
    layout = _layout(_spec("meta-llama/Llama-3.1-70B", "", nodes=2, gpus=8))
    assert layout.kind == FSDP and layout.dp_shard_size is None
    assert "one node's share of the weights does not fit its GPUs" in layout.line


def test_an_adapter_too_big_for_one_gpu_on_several_nodes_shards_its_base_in_the_node():
    layout = _layout(_spec("meta-llama/Llama-3.1-70B", LORA, nodes=4, gpus=8))
    assert (layout.kind, layout.dp_shard_size) == (HSDP, 8)


def test_without_a_gpu_figure_nothing_is_chosen_and_the_line_says_so():
    spec = _spec("meta-llama/Llama-3.1-8B", LORA, nodes=2, gpus=8, gpu="mystery")
    layout = _layout(spec)
    assert layout.kind == FSDP
    assert "not judged whether the whole adapter model fits each GPU: no GPU memory figure " \
        "(`launch.gpu`, or the GPU `ft train` runs on)" in layout.line
    assert apply_layout(spec.training, layout) is spec.training


def test_fsdp_activation_checkpointing_carries_over_to_ddp():
    spec = _spec("meta-llama/Llama-3.1-8B", LORA, extra="gradient_checkpointing: false\n",
                 fsdp_lines="  activation_checkpointing: true\n").training
    layout = choose_layout(spec, 1, 2, Fits(whole=True))
    assert apply_layout(spec, layout).gradient_checkpointing is True


# ---- inter-node bytes: hand calculations on Llama-3.1-8B (2 nodes x 8 GPUs, bf16) ----------

# 32 layers x (q 4096x4096 + k, v 4096x1024 + o 4096x4096 + gate, up, down 4096x14336)
# + embeddings and lm_head 128256 x 4096 each + 65 norms of 4096
PARAMS = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) \
    + 2 * 128256 * 4096 + 65 * 4096
# r 16 x (in + out) of each projection: q 8192, k 5120, v 5120, o 8192, gate/up/down 18432
LORA_PARAMS = 32 * 16 * (8192 + 2 * 5120 + 8192 + 3 * 18432)
RING = 15 / 16  # 16 GPUs


def test_the_hand_counts_are_the_model_counts():
    assert PARAMS == 8_030_261_248
    assert LORA_PARAMS == 41_943_040


@pytest.mark.parametrize(("training", "layout", "expected"), [
    # full fine-tune, FSDP over all GPUs: bf16 all-gather for forward and again for
    # backward, fp32 reduce-scatter: 15/16 x (2 x 2 + 4) bytes per parameter
    ("", "fsdp", RING * (2 * 2 + 4) * PARAMS),
    # HSDP: the fp32 gradients all-reduced between 2 replicas: 2 x 1/2 x 4 bytes
    ("", "hsdp", 2 * (1 / 2) * 4 * PARAMS),
    # LoRA under DDP: fp32 adapter gradients all-reduced over all 16 GPUs
    (LORA, "ddp", 2 * RING * 4 * LORA_PARAMS),
    # LoRA, FSDP2 with the base replicated: only the adapter gathered (bf16, twice) and
    # reduce-scattered (fp32)
    (LORA, "fsdp_replicated", RING * (2 * 2 + 4) * LORA_PARAMS),
    # LoRA, everything sharded over all GPUs: the bf16 base is gathered twice too
    (LORA, "fsdp", RING * (2 * 2 * (PARAMS + LORA_PARAMS) + 4 * LORA_PARAMS)),
    # LoRA under HSDP: only the adapter's gradients cross, between 2 replicas
    (LORA, "hsdp", 2 * (1 / 2) * 4 * LORA_PARAMS),
])
def test_internode_bytes_match_the_hand_calculation(training, layout, expected):
    spec = _spec("meta-llama/Llama-3.1-8B", training, nodes=2, gpus=8)
    got = out_of_each_node(moved(spec.training, KNOWN["llama-3.1-8b"]), layout, 2, 8)
    assert got == pytest.approx(expected, rel=1e-12)


def test_qlora_moves_its_base_packed():
    """4-bit projections travel as half a byte each; embeddings, head and norms as bf16."""
    spec = _spec("meta-llama/Llama-3.1-8B", LORA.replace("lora\n", "qlora\n")
                 + "load_in_4bit: true\n", nodes=2, gpus=8)
    linear = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336)
    base = 0.5 * linear + 2 * (PARAMS - linear)
    got = out_of_each_node(moved(spec.training, KNOWN["llama-3.1-8b"]), "fsdp", 2, 8)
    # base and bf16 adapter gathered twice, fp32 adapter gradients reduce-scattered once
    assert got == pytest.approx(RING * (2 * (base + 2 * LORA_PARAMS) + 4 * LORA_PARAMS),
                                rel=1e-12)


def test_the_table_has_each_node_count_and_the_spec_own():
    spec = _spec("meta-llama/Llama-3.1-8B", LORA, nodes=3, gpus=8)
    lines = table(spec.training, KNOWN["llama-3.1-8b"], 3, 8)
    assert lines[0].split()[-5:] == ["2", "3", "4", "8", "16"]
    assert [line[:22].strip() for line in lines[1:]] == [
        "FSDP over all GPUs", "FSDP2, base replicated", "HSDP, shard in node", "DDP"]
    # 2 nodes, DDP: 2 x 15/16 x 4 x 41,943,040 bytes = 0.31 GB
    assert lines[4].split()[1] == "0.31"


def test_the_documented_worked_case():
    """docs/sharded-training.md's figures for Llama-3.1-8B on 2 nodes x 8 GPUs."""
    shape = KNOWN["llama-3.1-8b"]
    full = table(_spec("x", "", nodes=2, gpus=8).training, shape, 2, 8)
    assert [row.split()[-4:] for row in full[1:]] == [
        ["60.2", "62.2", "63.2", "63.7"], ["32.1", "48.2", "56.2", "60.2"]]
    lora = table(_spec("x", LORA, nodes=2, gpus=8).training, shape, 2, 8)
    assert [row.split()[-4] for row in lora[1:]] == ["30.4", "0.31", "0.17", "0.31"]


def test_an_unknown_model_gets_bytes_per_parameter():
    spec = _spec("org/unknown-model", "", nodes=2, gpus=8)
    lines = table(spec.training, None, 2, 8)
    assert lines[1].split()[-4] == "7.50" and lines[2].split()[-4] == "4.00"


def test_ft_validate_prints_the_layout_and_the_table_for_other_node_counts(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "output": "b"}\n')
    (tmp_path / "spec.yaml").write_text(
        "base_model: meta-llama/Llama-3.1-8B\ndatasets:\n  - path: data.jsonl\n"
        f"    type: alpaca\nsequence_len: 2048\nmicro_batch_size: 1\nbf16: true\n{LORA}"
        f"{FSDP_SPEC}launch:\n  name: j\n  gpus_per_node: 2\n  gpu: H100\n")
    result = run_ft("validate", "spec.yaml", "--backend", "slurm", "--nodes", "4",
                    "--gpus-per-node", "8", cwd=tmp_path,
                    env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "  layout: DDP, chosen by `replicate_frozen_params: auto`" in out
    assert "  inter-node traffic per optimizer step, out of each node (NCCL ring estimate, " \
        "GB; 8.03B parameters" in out
    assert "    DDP  " in out
    # the memory printed is the chosen layout's: the whole bf16 base on each GPU
    assert "  memory per GPU (estimate): " in out and "weights 15.1 + " in out
