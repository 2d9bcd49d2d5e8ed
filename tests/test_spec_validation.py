"""Spec validation: every problem at once, with path, line and a fix; Axolotl configs as is."""

from __future__ import annotations

import os
import textwrap

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import REPO, run_ft
from trainer.torch_free.errors import SpecError

BASE = """\
base_model: ./model
datasets:
  - path: data.jsonl
    type: alpaca
"""


def _problems(text: str, for_launch: bool = False, strict: bool = False) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(textwrap.dedent(text), "spec.yaml", for_launch=for_launch, strict=strict)
    return [p.format("spec.yaml") for p in info.value.problems]


def test_all_problems_at_once_with_lines_and_suggestions():
    problems = _problems(BASE + """\
lora_rr: 8
learning_rate: fast
launch:
  nodez: 2
  slurm:
    partiton: gpu
""", strict=True)
    assert problems == [
        "spec.yaml:5: `lora_rr`: unknown key; did you mean `lora_r`?",
        "spec.yaml:6: `learning_rate`: expected a number (got 'fast')",
        "spec.yaml:8: `launch.nodez`: unknown key; did you mean `nodes`?",
        "spec.yaml:10: `launch.slurm.partiton`: unknown key; did you mean `partition`?",
    ]


def test_nested_dataset_key_and_top_level_launch_typo():
    problems = _problems(BASE + "    feld: text\nlaunh: {}\n", strict=True)
    assert "spec.yaml:5: `datasets[0].feld`: unknown key; did you mean `field`?" in problems
    assert "spec.yaml:6: `launh`: unknown key; did you mean `launch`?" in problems
    # Without --strict the data key is only warned about; a `launch` typo still stops it.
    with pytest.warns(SpecWarning, match=r"spec.yaml:5: `datasets\[0\].feld`: unknown key"):
        problems = _problems(BASE + "    feld: text\nlaunh: {}\n")
    assert problems == ["spec.yaml:6: `launh`: unknown key; did you mean `launch`?"]


@pytest.mark.parametrize(("extra", "path", "fix"), [
    ("adapter: qlora\nlora_target_linear: true\n", "adapter", "needs `load_in_4bit: true`"),
    ("load_in_8bit: true\nadapter: lora\nlora_target_linear: true\nfsdp: [full_shard]\n"
     "launch: {nodes: 2, gpus_per_node: 8}\n", "load_in_8bit", "cannot be sharded by FSDP"),
    ("fsdp: [full_shard]\nlaunch: {nodes: 1, gpus_per_node: 1}\n", "fsdp",
     "FSDP needs more than one GPU"),
    ("deepspeed: zero3.json\nlaunch: {gpus_per_node: 1}\n", "deepspeed",
     "DeepSpeed ZeRO needs more than one GPU"),
    ("sample_packing: true\nattn_implementation: eager\n", "sample_packing",
     "varlen-capable attention"),
    ("load_in_4bit: true\n", "adapter", "cannot be fully fine-tuned"),
    ("adapter: lora\n", "lora_target_linear", "which layers get adapters"),
    ("eval_steps: 4\n", "eval_steps", "no eval data"),
    ("eval_strategy: epoch\n", "eval_strategy", "no eval data"),
    ("launch: {env: {HF_TOKEN: x}, secrets: [HF_TOKEN]}\n", "launch.env.HF_TOKEN",
     "both a secret"),
    ("fsdp: [full_shard]\nfsdp_config: {replicate_frozen_params: true}\n",
     "fsdp_config.replicate_frozen_params", "nothing is frozen to replicate"),
    ("adapter: lora\nlora_target_linear: true\nfsdp: [full_shard]\nfsdp_config:\n"
     "  replicate_frozen_params: true\n  offload_params: true\n",
     "fsdp_config.replicate_frozen_params", "choose one"),
])
def test_cross_field_rules(extra, path, fix):
    problems = _problems(BASE + extra)
    assert any(f"`{path}`" in p and fix in p for p in problems), problems


def test_gpu_count_rules_wait_for_a_launch_section():
    """A plain Axolotl config has no GPU count yet; rendering it supplies one (1 x 1)."""
    text = BASE + "fsdp: [full_shard]\n"
    parse_spec(text, "spec.yaml")
    assert any("FSDP needs more than one GPU" in p for p in _problems(text, for_launch=True))
    parse_spec(text, "spec.yaml", {"nodes": 2, "gpus_per_node": 8}, for_launch=True)


def test_yaml_syntax_error_and_duplicate_key_have_lines():
    assert _problems("base_model: [unclosed\n")[0].startswith("spec.yaml:2: (top level): "
                                                              "not valid YAML")
    assert _problems(BASE + "base_model: again\n") == [
        "spec.yaml:5: `base_model`: key appears twice; keep one"]


@pytest.mark.parametrize("path", sorted((REPO / "tests/fixtures/axolotl").glob("*.y*ml")),
                         ids=lambda p: p.name)
def test_unmodified_axolotl_configs_validate(path):
    with pytest.warns(SpecWarning):  # each carries a key that changes nothing in ft
        spec = parse_spec(path.read_text(), str(path))
    assert spec.training.datasets


def test_unsupported_axolotl_option_is_named_unless_empty():
    parse_spec(BASE + "xformers_attention:\ns2_attention: false\n", "spec.yaml")
    assert _problems(BASE + "s2_attention: true\n") == [
        "spec.yaml:5: `s2_attention`: attention variants other than flash_attention / "
        "sdp_attention / flex_attention / eager are not supported; choose one with "
        "`attn_implementation`; remove it or leave it empty"]


def test_fsdp1_only_settings_are_warned_about():
    with pytest.warns(SpecWarning) as caught:
        spec = parse_spec(BASE + "fsdp_config: {fsdp_version: 1, fsdp_sync_module_states: "
                          "true, fsdp_use_orig_params: false}\n", "spec.yaml")
    messages = [str(w.message) for w in caught]
    assert "`fsdp_config.fsdp_version: 1` runs as FSDP2 (fully_shard per layer)" in messages
    assert "`fsdp_config.sync_module_states` has no FSDP2 equivalent and is ignored" in messages
    assert not any("use_orig_params" in m for m in messages)  # false asks for nothing
    assert spec.warnings == messages


def test_fsdp_config_accepts_both_spellings():
    spec = parse_spec(BASE + "fsdp_config: {fsdp_offload_params: true, state_dict_type: "
                      "SHARDED_STATE_DICT}\n", "spec.yaml")
    assert spec.training.fsdp_config.offload_params is True
    assert spec.training.fsdp_config.state_dict_type == "SHARDED_STATE_DICT"


def test_cli_overrides_reach_the_effective_spec():
    spec = parse_spec(BASE + "launch: {nodes: 1}\n", "spec.yaml", {"nodes": 4})
    assert spec.launch.nodes == 4
    assert "nodes: 4" in spec.effective_text


def test_cli_reports_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE + "lora_rr: 8\nlaunch: {nodez: 1}\n")
    result = run_ft("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:5: `lora_rr`: unknown key; did you mean `lora_r`?" in result.stderr
    assert f"{bad}:6: `launch.nodez`" in result.stderr


def test_cli_missing_file_is_a_clean_error(tmp_path):
    result = run_ft("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "no such spec file" in result.stderr and "Traceback" not in result.stderr


def test_zero3_with_quantized_weights_is_refused_at_validation():
    assert _problems(BASE + "load_in_4bit: true\nadapter: qlora\nlora_target_linear: true\n"
                     "deepspeed: zero3\n") == [
        "spec.yaml:8: `deepspeed`: ZeRO-3 with 4/8-bit weights is not supported (its "
        "checkpoints of bitsandbytes weights fail to save); for sharded QLoRA use FSDP "
        "(`fsdp: [full_shard]` with `fsdp_config`), or ZeRO-2 (`deepspeed: zero2`), which "
        "shards optimizer state and gradients only"]
    parse_spec(BASE + "load_in_4bit: true\nadapter: qlora\nlora_target_linear: true\n"
               "deepspeed: zero2\n", "spec.yaml")


def test_a_deepspeed_config_only_on_the_cluster_is_checked_when_training_starts(tmp_path):
    from trainer.distributed.deepspeed_config import prepare_deepspeed
    from trainer.torch_free.errors import UserError

    parse_spec(BASE + "deepspeed: /cluster/only/zero2.json\n", "spec.yaml")  # not here: ok
    with pytest.raises(UserError, match="ft fetch deepspeed-configs"):
        prepare_deepspeed(str(tmp_path / "missing.json"), False, False)
    broken = tmp_path / "broken.json"
    broken.write_text('{"zero_optimization": {"stage": 4}}')
    with pytest.raises(UserError, match="stage must be 0-3"):
        prepare_deepspeed(str(broken), False, False)


def test_fetch_copies_the_shipped_zero_configs(tmp_path):
    result = run_ft("fetch", "deepspeed-configs", "--to", str(tmp_path / "ds"))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "ds").iterdir())
    assert names == ["zero1.json", "zero2.json", "zero3.json", "zero3_offload.json",
                     "zero3_offload_params.json"]
    (tmp_path / "ds" / "zero2.json").write_text("{}")  # a user's edit survives a re-fetch
    run_ft("fetch", "deepspeed-configs", "--to", str(tmp_path / "ds"))
    assert (tmp_path / "ds" / "zero2.json").read_text() == "{}"


def test_fsdp_settings_ft_handles_its_own_way_are_noted():
    with pytest.warns(SpecWarning) as caught:
        parse_spec(BASE + "load_in_4bit: true\nadapter: qlora\nlora_target_linear: true\n"
                   "fsdp: [full_shard]\nfsdp_config: {fsdp_cpu_ram_efficient_loading: true, "
                   "fsdp_state_dict_type: SHARDED_STATE_DICT}\n", "spec.yaml")
    messages = " ".join(str(w.message) for w in caught)
    assert "`fsdp_config.state_dict_type` changes nothing" in messages
    assert "`fsdp_config.cpu_ram_efficient_loading` does not apply to 4-bit models" in messages


def _launch_spec(tmp_path, **launch):
    path = tmp_path / "spec.yaml"
    path.write_text(BASE + "launch:\n" + "".join(f"  {k}: {v}\n" for k, v in launch.items()))
    return path


@pytest.mark.parametrize(("gpu", "per_node", "refused"), [
    ("H100:80GB", 16, True), ("H200", 9, True), (None, 16, True), ("H100", 8, False),
    ("A100", 16, False), ("A100", 17, True), ("V100", 16, False)])
def test_gpus_per_node_beyond_any_machine_is_refused(tmp_path, gpu, per_node, refused):
    """An HGX board and a cloud's largest instance hold 8 GPUs (16 only for A100/V100
    machines): more renders, then waits forever or fails at submit."""
    from orchestrator import backends
    from orchestrator.spec.load import load_spec

    spec = load_spec(_launch_spec(tmp_path, nodes=1, gpus_per_node=per_node,
                                  **({"gpu": gpu} if gpu else {})), for_launch=True)
    for backend in ("dstack", "skypilot", "slurm"):
        found = [p for p in backends.get(backend).spec_problems(spec)
                 if p.path == "launch.gpus_per_node"]
        assert bool(found) == refused, (backend, found)
        if refused:
            assert found[0].line == 7 and "use more `launch.nodes` instead" in found[0].message


def test_validate_and_render_refuse_16_gpus_per_node_alike(tmp_path):
    spec = _launch_spec(tmp_path, nodes=1, gpus_per_node=16, gpu="H100:80GB")
    validated = run_ft("validate", str(spec), "--backend", "slurm")
    rendered = run_ft("render", str(spec), "--backend", "dstack")
    assert validated.returncode == rendered.returncode == 2, rendered.stderr
    assert "Traceback" not in validated.stderr + rendered.stderr
    for result, backend in ((validated, "slurm"), (rendered, "dstack")):
        assert (f"{spec}:7: `launch.gpus_per_node`: 16 GPUs per node: no H100 machine "
                f"{backend} can get has more than 8 H100 GPUs") in result.stderr, result.stderr


def test_a_local_launch_needs_this_machines_gpus(tmp_path):
    spec = _launch_spec(tmp_path, nodes=2, gpus_per_node=1)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    result = run_ft("validate", str(spec), "--backend", "local", env=env)
    assert result.returncode == 2
    assert (f"{spec}:7: `launch.gpus_per_node`: 2 node(s) x 1 GPU(s) need 2 GPUs of this "
            "machine, which has 1 (CUDA_VISIBLE_DEVICES=0)") in result.stderr, result.stderr
    env["CUDA_VISIBLE_DEVICES"] = "0,1"
    assert "launch.gpus_per_node" not in run_ft("validate", str(spec), "--backend", "local",
                                                env=env).stderr


def test_visible_gpus_counts_the_device_files(tmp_path):
    from orchestrator.spec.local_checks import visible_gpus

    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert visible_gpus({}, tmp_path)[0] == 2
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path)[0] == 0
