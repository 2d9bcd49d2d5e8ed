"""`attn_implementation: org/repo` (a hub kernel): validated as a name, loaded by
transformers where the job can, otherwise the best installed kernel with a warning."""

from __future__ import annotations

import logging

import pytest

from orchestrator.spec.load import SpecWarning, parse_spec
from tests.cli_runner import REPO, run_ft
from tests.test_axolotl_corpus import _tiny_copy
from tests.train_helpers import summary
from trainer.torch_free.errors import SpecError

BASE = "base_model: m\ndatasets: [{path: d.jsonl, type: alpaca}]\n"
CORPUS = REPO / "tests/fixtures/axolotl/corpus/hub-kernel-attention.yml"


@pytest.mark.parametrize("name", ["kernels-community/vllm-flash-attn3",
                                  "kernels-community/flash-attn2@v1",
                                  "kernels-community/flash-attn3:flash_attn_varlen_func"])
def test_hub_kernel_names_validate(name):
    with pytest.warns(SpecWarning, match="is a hub kernel: the job loads it where it has a GPU"):
        spec = parse_spec(BASE + f"attn_implementation: {name}\n", "spec.yaml")
    assert spec.training.requested_attention == name


def test_a_name_that_is_neither_says_what_is_accepted():
    with pytest.raises(SpecError) as info:
        parse_spec(BASE + "attn_implementation: xformers\n", "spec.yaml")
    (problem,) = info.value.problems
    assert "a hub kernel `org/repo`" in problem.message and "'sdpa'" in problem.message


def test_without_a_gpu_the_kernel_stands_for_flash_attention_with_a_warning(caplog):
    import torch

    from trainer.models.hub_attention import hub_kernel_or_fallback

    if torch.cuda.is_available():
        pytest.skip("the fallback is for a machine where the hub kernel cannot load")
    with caplog.at_level(logging.WARNING, logger="ft.model"):
        chosen = hub_kernel_or_fallback("kernels-community/vllm-flash-attn3")
    assert chosen == "flash_attention_2"  # then choose_attention picks the best installed
    assert "kernels-community/vllm-flash-attn3 cannot load here (no GPU" in caplog.text


def test_the_corpus_config_trains_with_the_fallback(tmp_path, tiny_model_dir):
    """What validate accepts trains: here (no GPU) on the best installed kernel."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU the kernel loads or falls back by the image's facts")
    spec = _tiny_copy(CORPUS.name, tmp_path, tiny_model_dir, "chat.jsonl")
    result = run_ft("train", str(spec))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cannot load here" in result.stderr
    facts = summary(tmp_path / "out")
    assert facts["global_step"] == 3 and facts["model"]["attn_implementation"] == "sdpa"
