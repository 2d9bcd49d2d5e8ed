"""`ft train` end to end on the tiny model: LoRA, full, QLoRA, resume, merge, inference.

Each run is the real CLI in a subprocess (a few seconds of CPU each), with the same code
path a real model takes: from_pretrained on a local directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.cli_runner import REPO, run_ft
from tests.train_helpers import summary, train_losses, write_tiny_spec
from trainer.torch_free.exit_codes import RESUMABLE_EXIT_CODE


def _train(spec, **kwargs):
    result = run_ft("train", str(spec), **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_lora_trains_loss_falls_and_saves_a_plain_peft_adapter(tmp_path, tiny_model_dir):
    from peft import AutoPeftModelForCausalLM

    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=12)
    _train(spec)
    out = tmp_path / "out"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json",
                 "ft-complete.json"):
        assert (out / name).is_file(), name
    losses = list(train_losses(out).values())
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    model = AutoPeftModelForCausalLM.from_pretrained(out)  # plain peft, no ft code
    assert model.peft_config["default"].r == 8
    marker = json.loads((out / "checkpoint-12" / "ft-complete.json").read_text())
    assert marker["step"] == 12 and "adapter_model.safetensors" in marker["files"]


def test_full_finetune_saves_a_plain_transformers_model(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    spec = write_tiny_spec(tmp_path, tiny_model_dir, adapter=None, learning_rate=0.001,
                           lora_target_linear=None)
    _train(spec)
    out = tmp_path / "out"
    assert (out / "model.safetensors").is_file()
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for n, p in model.named_parameters()
               if not torch.equal(p, base.state_dict()[n])]
    assert changed, "full fine-tuning changed no weight"
    # `ft inference` answers with the fine-tuned weights, not the base it started from.
    from orchestrator.spec.load import load_spec
    from trainer.models.inference import load_for_inference

    served, _ = load_for_inference(load_spec(spec).training)
    name = changed[0]
    assert torch.equal(served.state_dict()[name], model.state_dict()[name])


def test_qlora_code_path(tmp_path, tiny_model_dir):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")
    spec = write_tiny_spec(tmp_path, tiny_model_dir, adapter="qlora", load_in_4bit=True,
                           max_steps=4, save_steps=2, eval_steps=2)
    _train(spec)
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").is_file()
    assert summary(out)["model"]["loaded_in_4bit"] is True
    assert all(loss == loss for loss in train_losses(out).values()), "a loss is NaN"


def test_resume_continues_from_the_newest_complete_checkpoint(tmp_path, tiny_model_dir,
                                                              tiny_lora_run):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    # The same spec trained uninterrupted: the session's run, copied to be cut short here.
    for name in ("out", "prepared"):
        shutil.copytree(tiny_lora_run / name, tmp_path / name)
    out = tmp_path / "out"
    uninterrupted = train_losses(out)
    # Simulate a job killed after step 4: step 8's checkpoint and the final files never
    # happened, and a save of step 6 was cut off half-way (no completion marker).
    shutil.rmtree(out / "checkpoint-8")
    for name in ("adapter_model.safetensors", "ft-complete.json", "ft-train-summary.json"):
        (out / name).unlink()
    (out / "checkpoint-6").mkdir()
    (out / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"half-written")
    result = _train(spec)
    assert "resuming from" in result.stderr and "checkpoint-4" in result.stderr
    assert "checkpoint-6 cannot be resumed from: no completion marker" in result.stderr
    # Set aside, then deleted by the rotation after step 8 (the spec has a save_total_limit).
    assert not (out / "checkpoint-6").exists()
    resumed = train_losses(out)
    assert summary(out)["global_step"] == 8
    for step in range(5, 9):
        assert resumed[step] == pytest.approx(uninterrupted[step], abs=1e-5), step


def test_merge_lora_matches_base_plus_adapter_and_inference_runs(tmp_path, tiny_model_dir):
    """`bf16: auto` (the default) into a bf16 checkpoint: the merged model is bf16 (not an
    fp32 copy twice its size), equals base + adapter, and both inference paths run."""
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    base_dir = tmp_path / "bf16-base"
    shutil.copytree(tiny_model_dir, base_dir)
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(
        base_dir)
    spec = write_tiny_spec(tmp_path, base_dir, max_steps=4, bf16="auto")
    _train(spec)
    merge = run_ft("merge-lora", str(spec), "--cpu")
    assert merge.returncode == 0, merge.stderr[-2000:]
    out = tmp_path / "out"
    for path in (out / "merged").glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            assert {f.get_slice(k).get_dtype() for k in names} == {"BF16"}, path
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()  # plain transformers
    base = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16), out
    ).merge_and_unload().eval()
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, base(ids).logits)
    for extra in ((), ("--adapter",)):
        answer = run_ft("inference", str(spec), "--prompt", "Tell me about honey.",
                        "--max-new-tokens", "8", *extra)
        assert answer.returncode == 0, answer.stderr[-2000:]
        assert answer.stdout.strip(), "inference printed nothing"


@pytest.mark.parametrize("keys, stored, merged", [
    ({"bf16": "auto"}, torch.float32, torch.float32),
    ({"bf16": "auto"}, torch.bfloat16, torch.bfloat16),
    ({"bf16": False}, torch.bfloat16, torch.float32),
    ({"bf16": True}, torch.float32, torch.bfloat16),
    ({"bf16": False, "fp16": True}, torch.float32, torch.float16),
    ({"load_in_4bit": True, "adapter": "qlora"}, torch.float32, torch.bfloat16),
])
def test_merged_dtype_is_the_specs_or_the_stored_one(keys, stored, merged, tmp_path,
                                                     tiny_model_dir):
    from transformers import AutoConfig

    from orchestrator.spec.load import parse_spec
    from trainer.models.merge_lora import merged_dtype

    base_dir = tmp_path / "base"
    base_dir.mkdir()
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.dtype = stored
    config.save_pretrained(base_dir)
    cfg = parse_spec(write_tiny_spec(tmp_path, base_dir, **keys).read_text(),
                     "spec.yaml").training
    assert merged_dtype(cfg) == merged


def test_preprocess_reports_and_reuses_the_cache(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    first = run_ft("preprocess", str(spec), "--debug")
    assert first.returncode == 0, first.stderr[-2000:]
    stats = json.loads(first.stdout[:first.stdout.index("\n}") + 2])
    assert stats["cache"] == "miss" and stats["rows"] > 0 and stats["dropped_overlength"] >= 0
    assert 0 < stats["packing_efficiency"] <= 1
    second = run_ft("preprocess", str(spec))
    assert json.loads(second.stdout)["cache"] == "hit"


def test_missing_data_file_is_a_clean_error(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir)
    spec.write_text(spec.read_text().replace("alpaca.jsonl", "nope.jsonl"))
    result = run_ft("train", str(spec))
    assert result.returncode == 2
    assert "datasets[0]" in result.stderr and "nope.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_saves_a_complete_checkpoint_and_exits_for_a_retry(tmp_path, tiny_model_dir):
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "train", str(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:  # wait until training is really stepping
        lines.append(line)
        if "'loss'" in line and len([x for x in lines if "'loss'" in x]) >= 3:
            break
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == RESUMABLE_EXIT_CODE, "".join(lines[-20:]) + rest[-3000:]
    assert time.monotonic() - start < 60
    out = tmp_path / "out"
    (checkpoint,) = [p for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert (checkpoint / "ft-complete.json").is_file()
    assert not (out / "ft-complete.json").exists(), "a stopped run must not look finished"
    assert "SIGTERM received" in rest


def _restore_sigint() -> None:
    """preexec: SIGINT as a terminal's foreground job has it (a test run in the background
    would otherwise hand it down ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _train_until_stepping(spec, extra_env=None) -> tuple[subprocess.Popen, list[str]]:
    """`ft train` in a process group of its own, as a terminal runs a foreground job."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(extra_env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "train", str(spec)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, process_group=0, preexec_fn=_restore_sigint)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if sum("'loss'" in x for x in lines) >= 2:
            break
    return proc, lines


def test_ctrl_c_saves_like_sigterm_and_a_second_one_aborts_and_says_so(tmp_path,
                                                                       tiny_model_dir):
    """Ctrl-C is SIGINT to the terminal's whole foreground process group: the first saves a
    complete checkpoint and exits 75, logged as SIGINT; a second one (in the second run,
    while steps are slowed so it lands before the save) stops at once, unsaved, exit 130."""
    spec = write_tiny_spec(tmp_path, tiny_model_dir, max_steps=100000, save_steps=100000,
                           eval_steps=100000)
    proc, lines = _train_until_stepping(spec)
    os.killpg(proc.pid, signal.SIGINT)
    rest = proc.communicate(timeout=120)[0]
    log = "".join(lines) + rest
    assert proc.returncode == RESUMABLE_EXIT_CODE, log[-3000:]
    assert "SIGINT received: saving a checkpoint at the end of this step" in log
    assert "Ctrl-C again stops at once, without saving" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    out = tmp_path / "out"
    (checkpoint,) = [p for p in out.iterdir() if p.name.startswith("checkpoint-")]
    assert (checkpoint / "ft-complete.json").is_file()

    proc, lines = _train_until_stepping(spec, {"FT_TRAINER_HOOKS":
                                               "tests.support.slow_steps:install",
                                               "FT_TEST_STEP_DELAY_S": "2"})
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    log = "".join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, log[-3000:]
    assert "second SIGINT: stopping now, without saving" in log
    assert [p.name for p in out.iterdir() if p.name.startswith("checkpoint-")] == \
        [checkpoint.name], "the aborted run saved"
