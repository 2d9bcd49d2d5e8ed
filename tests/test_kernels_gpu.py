"""On CUDA GPUs (skipped elsewhere): Liger's kernels inside a real `ft train`, and `ft train`
without a launcher on a machine with several GPUs. `bash bench/gpu_tests.sh` runs them."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from tests.cli_runner import run_ft
from tests.train_helpers import train_losses, write_tiny_spec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA GPU")]
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0


def _train(tmp_path, model_dir, name, env=None, **keys):
    work = tmp_path / name
    work.mkdir()
    spec = write_tiny_spec(work, model_dir, bf16=True, max_steps=6, **keys)
    result = run_ft("train", str(spec), cwd=work, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    return train_losses(work / "out"), log


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger")
@pytest.mark.parametrize("adapter", ["lora", "qlora"])
def test_liger_by_default_follows_the_plain_loss_curve(adapter, tmp_path, tiny_model_dir):
    keys = {"adapter": adapter, "load_in_4bit": adapter == "qlora"}
    plain, _ = _train(tmp_path, tiny_model_dir, "plain", liger_kernel=False, **keys)
    fused, log = _train(tmp_path, tiny_model_dir, "fused", **keys)
    assert "liger_fused_linear_cross_entropy" in log and "(ft's default)" in log
    assert fused.keys() == plain.keys()
    # bf16 on a 2-layer model: same function, other rounding.
    assert list(fused.values()) == pytest.approx(list(plain.values()), abs=2e-2)


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
def test_ft_train_without_a_launcher_uses_one_gpu(tmp_path, tiny_model_dir):
    losses, log = _train(tmp_path, tiny_model_dir, "one", gradient_checkpointing=True)
    assert f"{GPUS} GPUs are visible" in log and "--gpus-per-node" in log
    assert losses


@pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs")
def test_ft_train_uses_one_gpu_even_when_cuda_started_before_it(tmp_path, tiny_model_dir):
    """A sitecustomize (a profiler, the bench's probe) starts CUDA before ft can hide the
    other GPUs: still one device, no DataParallel, the spec's batch, the same losses."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import torch\ntorch.cuda.init()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    keys = {"gradient_checkpointing": True, "seed": 3}
    clean, _ = _train(tmp_path, tiny_model_dir, "clean", **keys)
    early, log = _train(tmp_path, tiny_model_dir, "early", env=env, **keys)
    assert f"{GPUS} GPUs are visible" in log
    assert early == pytest.approx(clean, abs=1e-3)
