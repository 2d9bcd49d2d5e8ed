"""Our corpus of Axolotl-style configs (tests/fixtures/axolotl/corpus/): one per feature
family, written for ft in Axolotl's spellings. Each validates unchanged and renders for
every backend once a `launch:` says where; the refused ones name the missing feature; two
train 3 steps on the tiny model with only the model, data and output swapped.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from orchestrator import backends
from orchestrator.cli.launcher_hint import single_process_problem
from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.corpus_tiny import tiny_corpus_copy
from tests.train_helpers import summary
from trainer.torch_free.deepspeed_files import SHIPPED_DIR, resolve
from trainer.torch_free.errors import SpecError, UserError

CORPUS = REPO / "tests/fixtures/axolotl/corpus"
ACCEPTED = sorted(CORPUS.glob("*.yml"))
REFUSED = {
    "dpo.yml": "RL / preference training (DPO, IPO, ORPO, KTO, SimPO, GRPO) is not supported",
    "multimodal.yml": "multimodal training (image or audio inputs",
    "reward-model.yml": "reward models (a scalar head",
}
LAUNCH = "\nlaunch:\n  name: corpus\n  nodes: 1\n  gpus_per_node: 8\n  gpu: H100:80GB\n"
DEEPSPEED = {"zero1": "zero1", "zero2": "zero2", "zero3": "zero3", "zero3_bf16": "zero3",
             "zero3_bf16_cpuoffload_params": "zero3_offload_params",
             "zero3_bf16_cpuoffload_all": "zero3_offload"}


def _quiet_parse(text: str, source: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return parse_spec(text, source, **kwargs)


def test_the_corpus_covers_each_feature_family():
    names = {p.stem for p in ACCEPTED}
    assert {f"deepspeed-{name}" for name in DEEPSPEED} <= names
    assert {"qlora-fsdp2", "alpaca-full-no-eval", "chat-llama3-lora-kernels",
            "chat-qwen25-named-template", "pretraining-completion",
            "chat-thinking-fields"} <= names
    assert sorted(p.name for p in (CORPUS / "refused").glob("*.yml")) == sorted(REFUSED)


@pytest.mark.parametrize("path", ACCEPTED, ids=lambda p: p.stem)
def test_corpus_config_validates_unchanged_and_renders_for_every_backend(path, tmp_path):
    _quiet_parse(path.read_text(), str(path))
    spec = _quiet_parse(path.read_text() + LAUNCH, str(path), for_launch=True)
    for name in backends.render_names():
        rendered = backends.get(name).render(spec)
        assert rendered.files, name
        for filename, text in rendered.files.items():
            if filename.endswith(".sbatch"):
                script = tmp_path / filename
                script.write_text(text)
                assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.parametrize("path", sorted((CORPUS / "refused").glob("*.yml")),
                         ids=lambda p: p.stem)
def test_refused_config_names_the_missing_feature(path):
    with pytest.raises(SpecError) as info:
        _quiet_parse(path.read_text(), str(path))
    assert any(p.message.startswith(REFUSED[path.name]) for p in info.value.problems)


@pytest.mark.parametrize(("axolotl", "ours"), DEEPSPEED.items())
def test_axolotl_deepspeed_names_resolve_to_ft_configs(axolotl, ours):
    path = CORPUS / f"deepspeed-{axolotl}.yml"
    spec = _quiet_parse(path.read_text(), str(path))
    assert resolve(spec.training.deepspeed) == SHIPPED_DIR / f"{ours}.json"
    assert (SHIPPED_DIR / f"{ours}.json").is_file()


def test_a_users_own_copy_of_an_axolotl_deepspeed_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deepspeed_configs").mkdir()
    (tmp_path / "deepspeed_configs/zero2.json").write_text('{"zero_optimization": '
                                                           '{"stage": 2}}')
    assert resolve("deepspeed_configs/zero2.json") == Path("deepspeed_configs/zero2.json")


def test_axolotls_torch_compile_deepspeed_files_are_refused():
    text = (CORPUS / "deepspeed-zero1.yml").read_text().replace("zero1.json",
                                                                "zero1_torch_compile.json")
    with pytest.raises(SpecError, match="DeepSpeed's own compile .* is not supported; use "
                       r"deepspeed_configs/zero1.json with `torch_compile: true`"):
        _quiet_parse(text, "spec.yaml")


def test_fsdp2_spelling_reaches_the_sharding_plan():
    import torch

    from trainer.distributed.fsdp import plan_for

    path = CORPUS / "qlora-fsdp2.yml"
    cfg = _quiet_parse(path.read_text(), str(path)).training
    assert cfg.fsdp_config.fsdp_version == 2 and cfg.uses_fsdp
    plan = plan_for(cfg, torch.bfloat16)
    assert plan.layer_classes == ("LlamaDecoderLayer",)
    assert plan.activation_checkpointing and plan.reshard_after_forward
    assert not plan.offload_params


def test_ft_validate_agrees_with_render_about_a_plain_fsdp_config():
    path = str(CORPUS / "qlora-fsdp2.yml")
    plain = run_ft("validate", path)
    assert plain.returncode == 0, plain.stderr
    assert "--backend slurm: not ready" in plain.stderr and "FSDP needs more than one GPU" \
        in plain.stderr
    assert run_ft("render", path, "--backend", "slurm").returncode == 2
    assert run_ft("validate", path, "--backend", "slurm").returncode == 2
    eight = run_ft("validate", path, "--backend", "slurm", "--gpus-per-node", "8")
    assert eight.returncode == 0 and "--backend slurm: ready" in eight.stdout
    assert run_ft("render", path, "--backend", "slurm", "--gpus-per-node", "8").returncode == 0


def test_ft_train_of_a_sharded_config_outside_a_launcher_says_what_to_run():
    path = str(CORPUS / "qlora-fsdp2.yml")
    result = run_ft("train", path)
    assert result.returncode == 2
    assert f"ft launch {path} --backend local --gpus-per-node N" in result.stderr
    assert "torchrun --nproc-per-node N" in result.stderr
    assert "Traceback" not in result.stderr
    training = _quiet_parse(Path(path).read_text(), path).training
    under_torchrun = single_process_problem(training, Path(path),
                                            {"WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert under_torchrun is None  # torchrun --nproc-per-node 1 has a process group
    zero = run_ft("train", str(CORPUS / "deepspeed-zero2.yml"))
    assert zero.returncode == 2 and "DeepSpeed ZeRO (`deepspeed`) shards the model" \
        in zero.stderr and "mpi4py" not in zero.stderr


def _tiny_copy(name: str, tmp_path: Path, model_dir: Path, data: str, drop=()) -> Path:
    """The corpus config with only the model, the data file and the output swapped (and
    `drop`: keys that reach a network service)."""
    return tiny_corpus_copy(name, tmp_path, model_dir, data=data, drop=drop, max_steps=3)


def test_alpaca_full_config_trains_and_saves_after_the_first_step(tmp_path, tiny_model_dir):
    spec = _tiny_copy("alpaca-full-no-eval.yml", tmp_path, tiny_model_dir, "alpaca.jsonl")
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "`evals_per_epoch` is ignored: there is no eval data" in result.stderr
    out = tmp_path / "out"
    assert summary(out)["global_step"] == 3
    assert (out / "checkpoint-1" / "ft-complete.json").is_file()  # save_first_step


def test_named_template_chat_config_trains(tmp_path, tiny_model_dir):
    spec = _tiny_copy("chat-qwen25-named-template.yml", tmp_path, tiny_model_dir, "chat.jsonl",
                      drop=("wandb_project", "wandb_mode", "use_wandb"))
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    facts = summary(tmp_path / "out")
    assert facts["global_step"] == 3
    assert facts["model"]["attn_implementation"] == "sdpa"  # sdp_attention: true


def test_thinking_fields_config_trains_the_reasoning_with_its_answer(tmp_path,
                                                                     tiny_model_dir):
    """chat-thinking-fields.yml on the tiny model, with a Qwen3-style thinking template
    (the tiny tokenizer's own writes no reasoning): the reasoning read from `thinking`
    trains with its answer, a `train: false` answer does not, and 3 steps train."""
    from transformers import AutoTokenizer

    from tests.chat_mask_cases import thinking_template
    from tests.fixtures_tiny import trained_runs, write_jsonl
    from trainer.data.formats import RowEncoder
    from trainer.torch_free.training import TrainingConfig

    rows = [{"messages": [
        {"role": "user", "content": f"What is {i} plus {i}?"},
        {"role": "assistant", "content": f"It is {2 * i}.", "train": False},
        {"role": "user", "content": "Are you sure?"},
        {"role": "assistant", "content": "Yes.", "thinking": f"{i} and {i} make {2 * i}."},
    ]} for i in range(8)]
    spec = yaml.safe_load((CORPUS / "chat-thinking-fields.yml").read_text())
    spec["datasets"][0]["path"] = str(write_jsonl(tmp_path / "reasoning.jsonl", rows))
    spec.update(base_model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
                dataset_prepared_path=str(tmp_path / "prep"), max_steps=3,
                chat_template="jinja", chat_template_jinja=thinking_template(), bf16=False)
    path = tmp_path / "chat-thinking-fields.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = TrainingConfig(**spec)
    out = RowEncoder(cfg.datasets[0], cfg, tok)({"messages": [rows[3]["messages"]]})
    assert trained_runs(tok, out["input_ids"][0], out["labels"][0]) == [
        "3 and 3 make 6.\n</think>\n\nYes.<|im_end|>"]

    result = run_ft("train", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(tmp_path / "out")["global_step"] == 3


def test_fsdp_offload_on_a_cpu_job_is_a_clear_error_at_validate_and_train_time():
    import torch

    from trainer.distributed.fsdp import plan_for, require_runnable_here

    text = (CORPUS / "qlora-fsdp2.yml").read_text().replace("offload_params: false",
                                                            "offload_params: true")
    text = text.replace("load_in_4bit: true", "load_in_4bit: false").replace(
        "adapter: qlora", "adapter: lora")
    with pytest.raises(SpecError, match="a CPU job .* has them there already"):
        _quiet_parse(text + "launch: {nodes: 2, gpus_per_node: 0}\n", "spec.yaml")
    if torch.cuda.is_available():
        pytest.skip("the train-time check is for machines without a GPU")
    plan = plan_for(_quiet_parse(text, "spec.yaml").training, torch.float32)
    with pytest.raises(UserError, match="this machine has no GPU"):
        require_runnable_here(plan)


def test_pretraining_dataset_becomes_completion_data_with_one_warning():
    path = CORPUS / "pretraining-completion.yml"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        spec = parse_spec(path.read_text(), str(path))
    notes = [str(w.message) for w in caught]
    assert sum("`pretraining_dataset` is read as `type: completion` data" in n
               for n in notes) == 1
    (ds,) = spec.training.datasets
    assert (ds.path, ds.name, ds.split, ds.type, ds.field) == (
        "org/web-text", "en", "train[:2%]", "completion", "content")


def test_pretraining_dataset_with_datasets_or_skip_is_refused():
    text = (CORPUS / "pretraining-completion.yml").read_text()
    with pytest.raises(SpecError, match="choose one of `pretraining_dataset` and `datasets`"):
        _quiet_parse(text + "datasets:\n  - path: x.jsonl\n    type: alpaca\n", "s.yaml")
    with pytest.raises(SpecError, match="skipping rows"):
        _quiet_parse(text.replace("text_column: content", "skip: 100"), "s.yaml")


def test_pretraining_text_is_tokenized_and_every_token_trained(tmp_path, tiny_model_dir):
    from trainer.data.pipeline import prepare_data
    from trainer.models.load import load_tokenizer

    text = (f"base_model: {tiny_model_dir}\npretraining_dataset:\n"
            f"  - path: {REPO / 'examples/tiny/corpus.txt'}\n    type: pretrain\n"
            f"sequence_len: 64\ndataset_prepared_path: {tmp_path / 'prep'}\n")
    cfg = _quiet_parse(text, "s.yaml").training
    tokenizer = load_tokenizer(cfg)
    data = prepare_data(cfg, tokenizer, show_progress=False)
    assert len(data.train) > 0
    for row in data.train.select(range(min(5, len(data.train)))):
        assert row["labels"][1:] == row["input_ids"][1:]  # all trained (BOS aside)


def test_an_axolotl_deepspeed_path_ships_only_a_users_own_copy(tmp_path, monkeypatch):
    from orchestrator.shipping.job_files import job_files

    monkeypatch.chdir(tmp_path)
    text = (CORPUS / "deepspeed-zero2.yml").read_text() + LAUNCH
    spec = _quiet_parse(text, "spec.yaml", for_launch=True)
    assert job_files(spec, absolute_ok=False) == []  # ft's own zero2 is on every node
    (tmp_path / "deepspeed_configs").mkdir()
    (tmp_path / "deepspeed_configs/zero2.json").write_text('{"zero_optimization": '
                                                           '{"stage": 2}}')
    (shipped,) = job_files(spec, absolute_ok=False)
    assert (shipped.field, shipped.path) == ("deepspeed", "deepspeed_configs/zero2.json")
